package lmtpd

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/directory"
)

// BenchmarkDeliver measures the delivery pipeline without the network: 4 KiB
// message, fsync on, 1 or 5 recipients (hard links after the first).
func BenchmarkDeliver(b *testing.B) {
	for _, n := range []int{1, 5} {
		b.Run(fmt.Sprintf("rcpts=%d", n), func(b *testing.B) {
			root := b.TempDir()
			cfg := DefaultConfig()
			cfg.DuplicatePeriod = 0
			dv := NewDeliverer(Options{Config: cfg, Directory: &fakeDir{}})
			var rc []Recipient
			for i := 0; i < n; i++ {
				rc = append(rc, Recipient{Addr: fmt.Sprintf("u%d@example.com", i),
					User: &directory.User{Login: fmt.Sprint(i), Home: filepath.Join(root, fmt.Sprint(i))}})
			}
			msg := []byte(testMsg + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 60))
			b.SetBytes(int64(len(msg) * n))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dv.Deliver(context.Background(), &Delivery{From: "s@example.net", Recipients: rc, Data: msg, SessionID: "b"},
					func(_ int, err error) {
						if err != nil {
							b.Fatal(err)
						}
					})
			}
		})
	}
}
