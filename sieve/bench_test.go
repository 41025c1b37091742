package sieve

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the process CPU time (user+system, all threads). The
// benchmarks report it per op as cpu-ns/op, which stays meaningful on a
// machine shared with other builds (wall-clock ns/op does not).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// benchScript is a typical 30-rule delivery filter: header, address,
// envelope, spamtest, fileinto and imap4flags.
var benchScript = func() string {
	var b strings.Builder
	b.WriteString(`require ["fileinto", "imap4flags", "spamtest", "relational", "comparator-i;ascii-numeric", "envelope", "subaddress", "mailbox"];
if spamtest :value "ge" :comparator "i;ascii-numeric" "8" { fileinto "Junk"; stop; }
if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { addflag "$Spammy"; }
`)
	lists := []string{"dovecot", "postfix", "golang-nuts", "debian-devel", "lkml", "openbsd-misc", "freebsd-hackers", "nginx"}
	for _, l := range lists {
		fmt.Fprintf(&b, "if header :contains \"list-id\" \"<%s.\" { fileinto :create \"Lists.%s\"; stop; }\n", l, l)
	}
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&b, "if address :is :domain \"from\" \"partner%d.example.com\" { addflag \"\\\\Flagged\"; fileinto \"Partners.%d\"; }\n", i, i)
	}
	for i := 0; i < 6; i++ {
		fmt.Fprintf(&b, "if header :matches \"subject\" \"*[ticket-%d*]*\" { fileinto \"Tickets\"; }\n", i)
	}
	b.WriteString(`if envelope :detail "to" "shop" { fileinto "Shopping"; }
if anyof (header :contains "x-mailer" "bulkmail", exists "x-campaign-id") { fileinto "Newsletters"; }
if size :over 5M { addflag "$Large"; }
if address :localpart "from" ["noreply", "no-reply", "mailer-daemon"] { addflag "$Auto"; }
if header :is "priority" "urgent" { addflag "\\Flagged"; }
if not exists "date" { addflag "$NoDate"; }
`)
	return b.String()
}()

const benchMessage = "Return-Path: <bob@example.org>\r\n" +
	"Received: from mx.example.org (mx.example.org [192.0.2.1]) by mail.example.net\r\n" +
	"From: Bob Example <bob@example.org>\r\n" +
	"To: Alice <alice+shop@example.net>\r\n" +
	"Subject: Your order has shipped\r\n" +
	"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n" +
	"Message-ID: <order-42@example.org>\r\n" +
	"X-Spam-Score: 2.1\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello Alice,\r\nyour order has shipped.\r\n"

var benchMsg = NewMessage([]byte(benchMessage))

var benchConfig = map[string]string{
	"sieve_spamtest_status_header": "X-Spam-Score",
	"sieve_spamtest_status_type":   "score",
	"sieve_spamtest_max_value":     "10",
}

func benchEnv() *Env {
	return &Env{
		Message:  benchMsg,
		Envelope: Envelope{From: "bob@example.org", To: "alice+shop@example.net"},
		Config:   benchConfig,
	}
}

func BenchmarkExecute30Rules(b *testing.B) {
	s := mustCompile(b, benchScript)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		res, err := s.Execute(ctx, benchEnv())
		if err != nil || len(res.Actions) == 0 {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// script200 is a 200-line script mixing most constructs.
var script200 = func() string {
	var b strings.Builder
	b.WriteString(`require ["fileinto", "imap4flags", "variables", "relational", "comparator-i;ascii-numeric", "envelope", "subaddress", "body", "date", "regex", "copy", "vacation"];` + "\n")
	lines := 1
	for i := 0; lines < 200; i++ {
		fmt.Fprintf(&b, "if allof (header :contains \"subject\" \"topic %d\", address :domain \"from\" \"d%d.example\") {\n", i, i)
		fmt.Fprintf(&b, "  set \"folder\" \"Topic.%d\";\n", i)
		b.WriteString("  fileinto :copy \"${folder}\";\n")
		fmt.Fprintf(&b, "} elsif header :regex \"x-tag\" \"^t%d-[a-z]+$\" { addflag \"$T%d\"; }\n", i, i)
		lines += 4
	}
	return b.String()
}()

func BenchmarkCompile200Lines(b *testing.B) {
	src := []byte(script200)
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := Compile("bench.sieve", src, nil); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

func TestBenchScriptsCompile(t *testing.T) {
	if n := strings.Count(script200, "\n"); n < 200 {
		t.Errorf("script200 has %d lines", n)
	}
	if n := strings.Count(benchScript, "\nif ") + 1; n < 30 {
		t.Errorf("benchScript has %d rules", n)
	}
	mustCompile(t, script200)
	res, err := mustCompile(t, benchScript).Execute(context.Background(), benchEnv())
	if err != nil {
		t.Fatal(err)
	}
	if got := actSummary(res); len(got) != 1 || got[0] != "fileinto:Shopping" {
		t.Errorf("bench script result %q", got)
	}
}

// BenchmarkExecute30RulesFreshMessage includes parsing the message
// (NewMessage) on every iteration, as the delivery agent does per delivery.
func BenchmarkExecute30RulesFreshMessage(b *testing.B) {
	s := mustCompile(b, benchScript)
	ctx := context.Background()
	raw := []byte(benchMessage)
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		env := benchEnv()
		env.Message = NewMessage(raw)
		if _, err := s.Execute(ctx, env); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}
