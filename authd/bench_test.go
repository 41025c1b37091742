package authd

import (
	"fmt"
	"testing"
)

// BenchmarkPlain measures AUTH PLAIN round trips over a TCP socket on one
// connection (like one Postfix smtpd), from the cache and from the directory
// (static users file, cache off).
func BenchmarkPlain(b *testing.B) {
	for _, tc := range []struct {
		name  string
		cache bool
	}{{"cache-hit", true}, {"cache-off", false}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := testConfig()
			if !tc.cache {
				cfg.CacheSize = 0
			}
			ts := startTB(b, cfg, newFakeDirTB(b))
			c := dialTB(b, ts.addr)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.id++
				fmt.Fprintf(c.c, "AUTH\t%d\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlcHc=\n", c.id)
				l, err := c.r.ReadString('\n')
				if err != nil || l[:2] != "OK" {
					b.Fatalf("%q %v", l, err)
				}
			}
		})
	}
}
