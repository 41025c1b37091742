package milter

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
	gomilter "github.com/emersion/go-milter"

	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/spam"
)

// corpusMsg is a corpus message split the way an MTA sends it to a milter.
type corpusMsg struct {
	hdr  textproto.Header
	body []byte // CRLF line ends, as Postfix sends them
}

// loadCorpus reads up to n messages from ../shared/corpus (ham and spam
// interleaved, in name order so every run uses the same set).
func loadCorpus(tb testing.TB, n int) []corpusMsg {
	tb.Helper()
	dir := filepath.Join(testenv.SharedDir(tb), "corpus")
	var files []string
	for _, sub := range []string{"ham", "spam"} {
		fs, _ := filepath.Glob(filepath.Join(dir, sub, "*.eml"))
		sort.Strings(fs)
		files = append(files, fs...)
	}
	if len(files) == 0 {
		tb.Skip("no corpus")
	}
	// Interleave by stepping through the sorted list.
	step := max(1, len(files)/n)
	var out []corpusMsg
	for i := 0; i < len(files) && len(out) < n; i += step {
		raw, err := os.ReadFile(files[i])
		if err != nil {
			tb.Fatal(err)
		}
		if bytes.HasPrefix(raw, []byte("From ")) { // mbox separator line
			if i := bytes.IndexByte(raw, '\n'); i >= 0 {
				raw = raw[i+1:]
			}
		}
		raw = bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		br := bufio.NewReader(bytes.NewReader(raw))
		h, err := textproto.ReadHeader(br)
		if err != nil {
			continue // a few corpus files have broken headers; an MTA would not pass them either
		}
		body, _ := io.ReadAll(br)
		out = append(out, corpusMsg{h, body})
	}
	return out
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

// milterClientSession opens one MTA-side session through CONNECT and HELO.
func milterClientSession(tb testing.TB, addr string) *gomilter.ClientSession {
	c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := s.Conn("client.test", gomilter.FamilyInet, 25000, "192.0.2.10"); err != nil {
		tb.Fatal(err)
	}
	if _, err := s.Helo("client.test"); err != nil {
		tb.Fatal(err)
	}
	return s
}

// sendCorpusMsg runs one message transaction as Postfix does (macros, MAIL,
// RCPT, headers, body chunks, EOM) and returns the final action.
func sendCorpusMsg(s *gomilter.ClientSession, m corpusMsg, id int) (*gomilter.Action, error) {
	if err := s.Macros(gomilter.CodeMail, "{mail_addr}", "sender@remote.test"); err != nil {
		return nil, err
	}
	if act, err := s.Mail("sender@remote.test", nil); err != nil || act.Code != gomilter.ActContinue {
		return act, err
	}
	if act, err := s.Rcpt("alice@example.com", nil); err != nil || act.Code != gomilter.ActContinue {
		return act, err
	}
	if act, err := s.Header(m.hdr); err != nil || act.Code != gomilter.ActContinue {
		return act, err
	}
	if err := s.Macros(gomilter.CodeEOB, "i", fmt.Sprintf("Q%08X", id)); err != nil {
		return nil, err
	}
	_, act, err := s.BodyReadFrom(bytes.NewReader(m.body))
	return act, err
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
				sessions[i] = milterClientSession(b, ln.Addr().String())
			}
			var bytesTotal int64
			for _, m := range msgs {
				bytesTotal += int64(len(m.body))
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
						act, err := sendCorpusMsg(sessions[c], msgs[i%len(msgs)], i)
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
