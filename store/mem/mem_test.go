package mem_test

import (
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
	"github.com/dovetail-mail/dovetail/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.RunWithClock(t, func(t *testing.T, now func() time.Time) store.Store {
		s := mem.New()
		s.Now = now
		return s
	})
}
