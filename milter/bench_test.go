package milter

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/dovetail-mail/dovetail/internal/miltertest"
	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/spam"
)

// loadCorpus reads up to n messages from ../shared/corpus (see
// miltertest.LoadCorpus), skipping the benchmark when there is none.
func loadCorpus(tb testing.TB, n int) []miltertest.Message {
	tb.Helper()
	msgs, err := miltertest.LoadCorpus(filepath.Join(testenv.SharedDir(tb), "corpus"), n)
	if err != nil {
		tb.Skip(err)
	}
	return msgs
}

// benchEngine is the engine with its default rules (Bayes off: it needs a
// trained store; in-process figures with Bayes are in docs/benchmarks.md ## spam).
func benchEngine(tb testing.TB) Scorer {
	cfg := spam.DefaultConfig()
	cfg.Bayes.Enabled = false
	e, err := spam.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// BenchmarkMilterThroughput measures whole message transactions through the
// milter protocol over loopback TCP, with 1 and 2 MTA connections (Postfix
// opens one per SMTP session), scoring with the real engine.
func BenchmarkMilterThroughput(b *testing.B) {
	msgs := loadCorpus(b, 400)
	for _, conns := range []int{1, 2} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			cfg := DefaultConfig()
			srv, err := New(cfg, benchEngine(b), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			if err != nil {
				b.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve(ln)
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
			}()
			sessions := make([]*gomilter.ClientSession, conns)
			for i := range sessions {
				s, err := miltertest.Session(ln.Addr().String(), 30*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				sessions[i] = s
			}
			var bytesTotal int64
			for _, m := range msgs {
				bytesTotal += int64(len(m.Body))
			}
			b.SetBytes(bytesTotal / int64(len(msgs)))
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			errs := make(chan error, conns)
			for c := 0; c < conns; c++ {
				wg.Add(1)
				go func(c int) {
					defer wg.Done()
					for i := c; i < b.N; i += conns {
						act, err := miltertest.Send(sessions[c], msgs[i%len(msgs)], i)
						if err != nil {
							errs <- err
							return
						}
						if act.Code != gomilter.ActAccept && act.Code != gomilter.ActReplyCode {
							errs <- fmt.Errorf("message %d: unexpected action %c", i, act.Code)
							return
						}
					}
				}(c)
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			for _, s := range sessions {
				s.Close()
			}
		})
	}
}
