package lmtpd

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/directory"
	"github.com/dovetail-mail/dovetail/quarantine"
	"github.com/emersion/go-smtp"
)

// BenchmarkDeliver measures the delivery pipeline without the network: 4 KiB
// message, fsync on, 1 or 5 recipients (hard links after the first).
func BenchmarkDeliver(b *testing.B) {
	for _, n := range []int{1, 5} {
		b.Run(fmt.Sprintf("rcpts=%d", n), func(b *testing.B) {
			b.ReportAllocs()
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

// largeMessage is a realistic big message as go-smtp hands it to LMTPData (CRLF,
// dot-unstuffed): Postfix's and the milter's header fields, a text part and a
// base64 attachment of about size bytes in 76-column lines.
func largeMessage(size int, spamScore string) []byte {
	var b bytes.Buffer
	b.WriteString("Received: from mail.example.net (mail.example.net [192.0.2.1])\n" +
		"\tby mx.example.com (Postfix) with ESMTPS id 4AbCdEfGh1\n\tfor <alice@example.com>; Mon, 23 Nov 2026 10:00:00 +0000 (UTC)\n" +
		"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=s1;\n\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\n\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSwganVzdCBmaWxsZXIgZm9yIHRoZSBiZW5jaG1hcms=\n" +
		"Authentication-Results: mx.example.com; spf=pass smtp.mailfrom=example.net; dkim=pass header.d=example.net\n" +
		"X-Spam-Flag: NO\nX-Spam-Score: " + spamScore + "\nX-Spam-Status: No, score=" + spamScore + " required=5.0 tests=DKIM_VALID,SPF_PASS\n" +
		"From: Sender <sender@example.net>\nTo: alice@example.com, bob@example.com, carol@example.com\n" +
		"Subject: quarterly report\nDate: Mon, 23 Nov 2026 09:59:58 +0000\nMessage-ID: <big1@example.net>\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n" +
		"--b1\nContent-Type: text/plain; charset=utf-8\n\nThe report is attached.\n\n" +
		"--b1\nContent-Type: application/pdf; name=\"report.pdf\"\nContent-Transfer-Encoding: base64\n" +
		"Content-Disposition: attachment; filename=\"report.pdf\"\n\n")
	raw := make([]byte, size*3/4)
	rand.New(rand.NewSource(1)).Read(raw)
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\n--b1--\n")
	return bytes.ReplaceAll(b.Bytes(), []byte("\n"), []byte("\r\n"))
}

// BenchmarkLMTPDataLarge measures one LMTP DATA of a ~10 MB message through the
// whole path after the protocol (readLimited, Deliver, Sieve, Maildir writes
// with fsync), the way Postfix hands it over: CRLF, with MAIL FROM's SIZE=
// (one case without, as a client that does not announce the size).
// B/op is what one delivery allocates; x-msg is B/op divided by the message
// size (SetBytes), the figure to keep close to 1.
func BenchmarkLMTPDataLarge(b *testing.B) {
	const fileintoAddheader = `require ["fileinto","editheader","mailbox"];
addheader "X-Filed" "yes";
fileinto :create "Archive";`
	const redirectAddheader = `require ["editheader","copy"];
addheader "X-Forwarded" "yes";
redirect :copy "x@elsewhere.example";`
	cases := []struct {
		name   string
		rcpts  int
		script string
		spam   bool
		noSize bool
	}{
		{"rcpts=1/script=none", 1, "", false, false},
		{"rcpts=3/script=none", 3, "", false, false},
		{"rcpts=1/script=fileinto+addheader", 1, fileintoAddheader, false, false},
		{"rcpts=3/script=fileinto+addheader", 3, fileintoAddheader, false, false},
		{"rcpts=1/script=redirect+addheader", 1, redirectAddheader, false, false},
		{"rcpts=1/quarantine", 1, "", true, false},
		{"rcpts=1/script=none/no-SIZE", 1, "", false, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			root := b.TempDir()
			cfg := DefaultConfig()
			cfg.Hostname = "mx.test"
			cfg.DuplicatePeriod = 0
			o := Options{Config: cfg}
			score := "1.2"
			if c.spam {
				score = "20.0"
				o.Config.QuarantineScore = 10
				q, err := quarantine.Open(quarantine.Config{Dir: filepath.Join(root, "quarantine")})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { q.Close() })
				o.Quarantine = q
			}
			if c.script != "" {
				p := filepath.Join(root, "before.sieve")
				if err := os.WriteFile(p, []byte(c.script), 0o644); err != nil {
					b.Fatal(err)
				}
				o.Config.Sieve.Before = []string{p}
				o.Filter = NewSieveFilter(o.Config.Sieve, "+", nil, nil)
				sendmail := filepath.Join(root, "sendmail")
				if err := os.WriteFile(sendmail, []byte("#!/bin/sh\nexec cat >/dev/null\n"), 0o755); err != nil {
					b.Fatal(err)
				}
				o.Sender = &SendmailSender{Path: sendmail}
			}
			users := &fakeDir{users: map[string]*directory.User{}}
			var rcpts []string
			for i := 0; i < c.rcpts; i++ {
				addr := fmt.Sprintf("u%d@example.com", i)
				users.users[addr] = &directory.User{Login: fmt.Sprint("u", i), Home: filepath.Join(root, "home", fmt.Sprint(i)), Enabled: true}
				rcpts = append(rcpts, addr)
			}
			o.Directory = users
			srv, err := New(o)
			if err != nil {
				b.Fatal(err)
			}
			msg := largeMessage(10<<20, score)
			opts := &smtp.MailOptions{Size: int64(len(msg))}
			if c.noSize {
				opts = nil
			}
			status := statusFunc(func(rcpt string, err error) {
				if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 250 {
					b.Fatalf("%s: %v", rcpt, err)
				}
			})
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ss := &session{s: srv, id: "bench", helo: "mail.example.net", ip: "192.0.2.1"}
				if err := ss.Mail("sender@example.net", opts); err != nil {
					b.Fatal(err)
				}
				for _, r := range rcpts {
					if err := ss.Rcpt(r, nil); err != nil {
						b.Fatal(err)
					}
				}
				ss.LMTPData(bytes.NewReader(msg), status)
				// Keep the disk use flat: b.N copies of 10 MB add up.
				b.StopTimer()
				os.RemoveAll(filepath.Join(root, "home"))
				b.StartTimer()
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/float64(len(msg)), "x-msg")
		})
	}
}
