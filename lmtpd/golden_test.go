package lmtpd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/quarantine"
	"github.com/prometheus/client_golang/prometheus"
)

// TestDeliveredBytesUnchanged: everything a delivery leaves behind — each
// Maildir file (name from S= on, content, which ones are hard links), each
// forwarded message as sendmail read it, the quarantine's files and index,
// the LMTP replies, the log lines and the metrics — is byte for byte what
// lmtpd wrote before it stopped copying messages in memory (one buffer per
// message, copies written as header parts in front of a shared body). The
// golden transcripts in testdata/golden were made by this test's scenarios
// run on the code before that change (commit 9680e92); a deliberate change of
// output has to be made in them by hand.
//
// The scenarios cover what the refactor touched: several recipients with a
// per-action editheader script, a redirect of an edited header, flags, hard
// links between recipients; a single recipient whose redirect fails and whose
// script deleted every field; a quarantined message and its release; line
// ends CRLF, a lone CR, dot-stuffing, and MAIL FROM's SIZE= right, missing and
// too small (the DATA buffer is sized from it).
func TestDeliveredBytesUnchanged(t *testing.T) {
	for _, sc := range goldenScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			got := sc.transcript(t)
			want, err := os.ReadFile(filepath.Join("testdata", "golden", sc.name+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
				for i := 0; i < len(gl) || i < len(wl); i++ {
					var g, w string
					if i < len(gl) {
						g = gl[i]
					}
					if i < len(wl) {
						w = wl[i]
					}
					if g != w {
						t.Fatalf("transcript differs from testdata/golden/%s.txt at line %d (got %d lines, want %d):\ngot  %q\nwant %q",
							sc.name, i+1, len(gl), len(wl), g, w)
					}
				}
			}
		})
	}
}

type goldenScenario struct {
	name       string
	transcript func(t *testing.T) string
}

// goldenBody is a body of n bytes in 76-column lines (base64-like), with a
// dot-stuffed line and a lone CR in it, so the DATA buffer has to grow past
// its first chunk and normalise line ends split between reads.
func goldenBody(n int) string {
	var b strings.Builder
	b.WriteString("first line\n.starts with a dot\nlone\rCR\n")
	for i := 0; b.Len() < n; i++ {
		line := fmt.Sprintf("%06d", i) + strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 2)
		b.WriteString(line[:76] + "\n")
	}
	return b.String()
}

// goldenSend does one transaction with MAIL FROM's SIZE= (none when size < 0).
func goldenSend(t *testing.T, v *conv, from string, size int, rcpts []string, msg string) []string {
	t.Helper()
	mail := "MAIL FROM:<" + from + ">"
	if size >= 0 {
		mail += fmt.Sprintf(" SIZE=%d", size)
	}
	var out []string
	out = append(out, mail, v.cmd(mail))
	ok := 0
	for _, r := range rcpts {
		rep := v.cmd("RCPT TO:<" + r + ">")
		out = append(out, "RCPT "+r, rep)
		if strings.HasPrefix(rep, "250") {
			ok++
		}
	}
	out = append(out, "DATA", v.cmd("DATA"))
	fmt.Fprint(v.c, dataWire(msg))
	for i := 0; i < ok; i++ {
		out = append(out, v.reply())
	}
	return out
}

// goldenEnv is newEnv with a fourth user (dave), the users' scripts, a Sieve
// filter, a sendmail that records what it reads (and fails for fail@…), and
// the log and metrics captured.
type goldenEnv struct {
	*env
	sent     string // where sendmail leaves what it read
	sendmail string
	logb     *testenv.LogBuffer
}

func newGoldenEnv(t *testing.T, scripts map[string]string, mut func(*Options)) *goldenEnv {
	t.Helper()
	g := &goldenEnv{sent: t.TempDir(), logb: &testenv.LogBuffer{}}
	g.sendmail = filepath.Join(t.TempDir(), "sendmail")
	os.WriteFile(g.sendmail, []byte("#!/bin/sh\nn=$(ls "+g.sent+" | wc -l)\n{ echo \"$@\"; cat; } > "+g.sent+"/$(printf %03d $n)\n"+
		"case \"$*\" in *fail@*) exit 67;; esac\n"), 0o755)
	g.env = newEnv(t, func(o *Options) {
		o.Directory.(*fakeDir).users["dave@example.com"] = &directory.User{Login: "dave", Addresses: []string{"dave@example.com"},
			Home: filepath.Join(filepath.Dir(o.Directory.(*fakeDir).users["alice@example.com"].Home), "dave"), Enabled: true}
		for user, s := range scripts {
			home := filepath.Join(filepath.Dir(o.Directory.(*fakeDir).users["alice@example.com"].Home), user)
			os.MkdirAll(home, 0o700)
			if err := os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		o.Filter = NewSieveFilter(o.Config.Sieve, "+", nil, nil)
		o.Sender = &SendmailSender{Path: g.sendmail}
		o.Registerer = prometheus.NewRegistry()
		o.Logger = slog.New(slog.NewTextHandler(g.logb, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "duration" {
				return slog.Attr{}
			}
			return a
		}}))
		if mut != nil {
			mut(o)
		}
	})
	return g
}

// goldenContent shows a message in full when it is short, else its header
// and the length and SHA-256 of the whole.
func goldenContent(c string) string {
	if len(c) <= 1024 {
		return fmt.Sprintf("%d bytes:\n%s\n", len(c), c)
	}
	h := c
	if i := strings.Index(c, "\n\n"); i >= 0 {
		h = c[:i+2]
	}
	h = h[:min(len(h), 2048)]
	return fmt.Sprintf("%d bytes, sha256 %x, beginning:\n%s\n", len(c), sha256.Sum256([]byte(c)), h)
}

var (
	goldenDate  = regexp.MustCompile(`; [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [-+]\d{4}\n`)
	goldenQID   = regexp.MustCompile(`\b\d{6}-[0-9a-z]{10}\b`)
	goldenName  = regexp.MustCompile(`\b\d+\.M\d+P\d+\.mx\.test,`)
	goldenReply = regexp.MustCompile(`^250 2\.0\.0 <[^>]+> (\S+) Saved$`)
)

// transcript renders what the scenario left behind, with what varies from run
// to run (session ids, dates, quarantine ids, unique file names, temporary
// paths) replaced.
func (g *goldenEnv) transcript(t *testing.T, replies []string) string {
	t.Helper()
	canon := func(s string) string {
		for _, r := range replies {
			if sm := goldenReply.FindStringSubmatch(r); sm != nil {
				s = strings.ReplaceAll(s, sm[1], "SESSION")
			}
		}
		s = strings.ReplaceAll(s, g.sendmail, "SENDMAIL")
		s = goldenDate.ReplaceAllString(s, "; DATE\n")
		s = goldenQID.ReplaceAllString(s, "QID")
		return goldenName.ReplaceAllString(s, "NAME,")
	}
	var b strings.Builder
	b.WriteString("== replies\n" + strings.Join(replies, "\n") + "\n")

	type file struct{ name, content string }
	var fs []file
	links := map[uint64]int{}
	filepath.Walk(g.dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(g.dir, p)
		dir, name := filepath.Split(rel)
		switch {
		case strings.HasSuffix(dir, "/new/") || strings.HasSuffix(dir, "/cur/"):
			name = name[strings.IndexByte(name, ','):]
		case strings.HasPrefix(dir, "quarantine/msg/"):
			name = "ID.eml"
		default:
			return nil // maildirsize, dovecot-keywords, index.db, …
		}
		c, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			if _, ok := links[st.Ino]; !ok {
				links[st.Ino] = len(links) + 1
			}
			name += fmt.Sprintf(" (hard link %d)", links[st.Ino])
		}
		fs = append(fs, file{dir + name, canon(string(c))})
		return nil
	})
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].name != fs[j].name {
			return fs[i].name < fs[j].name
		}
		return fs[i].content < fs[j].content
	})
	for _, f := range fs {
		fmt.Fprintf(&b, "== file %s\n%s", f.name, goldenContent(f.content))
	}

	sent, _ := os.ReadDir(g.sent)
	for _, s := range sent {
		c, _ := os.ReadFile(filepath.Join(g.sent, s.Name()))
		fmt.Fprintf(&b, "== sendmail %s\n%s", s.Name(), goldenContent(canon(string(c))))
	}

	ents, err := g.quar.List(context.Background(), quarantine.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Recipient < ents[j].Recipient })
	for _, e := range ents {
		fmt.Fprintf(&b, "== quarantine index: rcpt=%s user=%s sender=%s subject=%q score=%v symbols=%v reason=%q size=%d message_id=%s queue_id=%s\n",
			e.Recipient, e.User, e.Sender, e.Subject, e.Score, e.Symbols, e.Reason, e.Size, e.MessageID, e.QueueID)
	}

	b.WriteString("== log\n" + g.logb.String())
	m := g.srv.Deliverer().Metrics
	b.WriteString("== metrics\n")
	for _, r := range []string{"delivered", "quarantined", "discarded", "duplicate", "redirected", "rejected", "tempfail", "failed"} {
		fmt.Fprintf(&b, "deliveries{result=%s} %v\n", r, counterOf(t, m.Deliveries.WithLabelValues(r)))
	}
	fmt.Fprintf(&b, "bytes %v\nquarantined %v\nsieve_errors %v\nlatency_count %v\n",
		counterOf(t, m.Bytes), counterOf(t, m.Quarantined), counterOf(t, m.SieveErrors), counterOf(t, m.Latency))

	return canon(b.String())
}

func goldenScenarios() []goldenScenario {
	hdr := "Received: from mail.example.net (mail.example.net [192.0.2.1])\n" +
		"\tby mx.example.com (Postfix) with ESMTP id 4AbCdEfGh1; Mon, 23 Nov 2026 10:00:00 +0000\n" +
		"X-Drop: internal\nFrom: Sender <sender@example.net>\nTo: alice@example.com,\n  carol@example.com, dave@example.com\n" +
		"Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\nMessage-ID: <golden1@example.net>\nMIME-Version: 1.0\n"
	return []goldenScenario{
		{"multi", func(t *testing.T) string {
			// alice files a copy before and after her edits, forwards the edited
			// header and keeps the final one; carol keeps the message as
			// received, dave files it flagged and keeps it (links to carol's).
			g := newGoldenEnv(t, map[string]string{
				"alice": `require ["editheader","fileinto","copy","mailbox","imap4flags"];
fileinto :copy :create "Before";
addheader "X-Added" "alice";
deleteheader "X-Drop";
fileinto :create :flags "\\Seen" "After";
redirect :copy "fwd@elsewhere.example";
addheader :last "X-Last" "1";
keep;`,
				"dave": `require ["fileinto","imap4flags","mailbox"];
fileinto :create :flags "\\Flagged" "Archive";
keep;`,
			}, nil)
			msg := hdr + "\n" + goldenBody(24<<10)
			// SIZE as Postfix sends it: a little more than the message (LF).
			replies := goldenSend(t, g.dial(), "sender@example.net", len(msg)+len(msg)/50,
				[]string{"alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"}, msg)
			return g.transcript(t, replies)
		}},
		{"single", func(t *testing.T) string {
			// One recipient (Delivered-To, "for"), no SIZE=: the script deletes
			// every field and redirects; sendmail refuses for good, so the
			// implicit keep stores the message with its (empty) final header.
			// Then a message that is all header, a lone CR in a field.
			g := newGoldenEnv(t, map[string]string{
				"alice": `require ["editheader"];
deleteheader "From"; deleteheader "Subject"; deleteheader "Message-ID";
redirect "fail@elsewhere.example";`,
			}, nil)
			v := g.dial()
			replies := goldenSend(t, v, "", -1, []string{"alice@example.com"},
				"From: s@example.net\nSubject: all gone\nMessage-ID: <golden2@example.net>\n\n"+goldenBody(20<<10))
			replies = append(replies, goldenSend(t, v, "s@example.net", 10, []string{"carol@example.com"},
				"Subject: header only\r\nX-Odd: lone\rCR in a field\r\n")...)
			return g.transcript(t, replies)
		}},
		{"quarantine", func(t *testing.T) string {
			// A spam score over quarantine_score for two recipients, SIZE= too
			// small; then carol's copy is released into her INBOX.
			g := newGoldenEnv(t, nil, func(o *Options) { o.Config.QuarantineScore = 6 })
			msg := strings.Replace(hdr, "MIME-Version:", "X-Spam-Score: 9.5\nX-Spam-Status: Yes, score=9.5 required=5.0 tests=A,B\nMIME-Version:", 1) +
				"\n" + goldenBody(30<<10)
			replies := goldenSend(t, g.dial(), "sender@example.net", 20<<10, []string{"alice@example.com", "carol@example.com"}, msg)
			ctx := context.Background()
			ents, err := g.quar.List(ctx, quarantine.Filter{User: "carol"})
			if err != nil || len(ents) != 1 {
				t.Fatalf("quarantine: %v %v", ents, err)
			}
			c, err := g.quar.Claim(ctx, ents[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			dv := g.srv.Deliverer()
			rc, err := dv.Resolve(ctx, c.Entry.Recipient)
			if err != nil {
				t.Fatal(err)
			}
			dv.Deliver(ctx, &Delivery{From: c.Entry.Sender, Recipients: []Recipient{rc}, Data: c.Message, SessionID: "release", Release: true},
				func(_ int, err error) {
					if err != nil {
						t.Fatal(err)
					}
				})
			if err := c.Done(ctx); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(c.Message, []byte("\r")) {
				t.Error("quarantined message has a CR")
			}
			return g.transcript(t, replies)
		}},
	}
}
