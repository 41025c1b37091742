package ldap

import (
	"context"
	"testing"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

// BenchmarkAuthenticate measures one uncached login against the real slapd.
func BenchmarkAuthenticate(b *testing.B) {
	s := testenv.Slapd(b)
	for _, mode := range []string{ModeBind, ModePassword} {
		b.Run(mode, func(b *testing.B) {
			d, err := New(testConfig(s, mode), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := d.Authenticate(ctx, "alice", "alicepw"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
