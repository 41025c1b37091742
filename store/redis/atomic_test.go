package redis_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/redis"
)

// cutProxy forwards connections to addr, but once a client has sent more than
// limit bytes in total the connection is cut: what a write timeout or a
// dropped link does to a large pipeline half-way through.
func cutProxy(t *testing.T, addr string, limit int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return testenv.Forward(t, ln, addr, testenv.Relay(func(dst io.Writer, src io.Reader) { io.Copy(dst, io.LimitReader(src, limit)) }))
}

// TestHIncrAllOrNothing: HIncr is the Bayes counts of one learned message; a
// connection lost while its pipeline is being sent must not leave some fields
// counted (the learner gives its claim back and a retry counts them again).
func TestHIncrAllOrNothing(t *testing.T) {
	srv := testenv.Redis(t)
	s := newStore(t, redis.Options{Addrs: []string{cutProxy(t, srv.Addr, 64<<10)}, Prefix: "cut:"})
	deltas := map[string]int64{}
	for i := range 5000 {
		deltas[fmt.Sprintf("token%05d", i)] = 1
	}
	if err := s.HIncr(t.Context(), "h", deltas); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("HIncr through a cut connection: %v, want store.ErrUnavailable", err)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer raw.Close()
	// Redis runs what it has read; give it the moment to do so.
	time.Sleep(100 * time.Millisecond)
	if n, err := raw.HLen(t.Context(), "cut:h").Result(); err != nil || n != 0 {
		t.Fatalf("after a failed HIncr the hash has %d field(s) (%v), want 0: partly counted", n, err)
	}
}
