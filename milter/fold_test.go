package milter

import (
	"context"
	"log/slog"
	"mime"
	"net"
	"strings"
	"testing"

	gomilter "github.com/emersion/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/internal/header"
	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/spam"
	"github.com/dovetail-mail/dovetail/spam/message"
)

// verdictScorer answers every message with the same verdict.
type verdictScorer struct{ v spam.Verdict }

func (verdictScorer) NewBuilder() *message.Builder {
	return message.NewBuilder(message.DefaultLimits())
}
func (s verdictScorer) Score(context.Context, *spam.Input) (spam.Verdict, error) {
	return s.v, nil
}

// longSubject is a rewritten Japanese subject: its encoded-words come to
// about 1,500 bytes.
var longSubject = "***SPAM*** " + strings.Repeat("こんにちは世界", 20)

// checkFolded fails unless every line of the field name:value fits in 78
// columns or is a single word, and reports the value unfolded. Lines end in
// CRLF, or in LF as go-milter (sendmail's convention) sends them.
func checkFolded(t *testing.T, name, value string) string {
	t.Helper()
	value = strings.ReplaceAll(value, "\r\n", "\n")
	for i, line := range strings.Split(name+":"+value, "\n") {
		if i > 0 && (line == "" || strings.TrimLeft(line, " \t") == "" || line[0] != ' ' && line[0] != '\t') {
			t.Errorf("%s: line %d %q is not a continuation line", name, i+1, line)
		}
		word := strings.TrimLeft(line, " \t")
		if i == 0 {
			word = strings.TrimLeft(strings.TrimPrefix(line, name+":"), " \t")
		}
		if len(line) > header.MaxLineLen && strings.ContainsAny(word, " \t") {
			t.Errorf("%s: line %d is %d columns: %q", name, i+1, len(line), line)
		}
	}
	return strings.ReplaceAll(value, "\n", "")
}

// The fields we add or change are folded: a long rewritten non-ASCII
// Subject and a long Authentication-Results used to go out as one line, and
// past 998 bytes Postfix breaks such a line wherever it reaches that length.
func TestAddedFieldsFolded(t *testing.T) {
	dom := strings.Repeat("d", 60) + ".example"
	v := spam.Verdict{Score: 7, Required: 5, IsSpam: true, Action: spam.RewriteSubject, Subject: longSubject,
		Symbols: []spam.Symbol{
			{Name: "DKIM_INVALID", Options: []string{"header.d=a." + dom, "header.d=b." + dom, "header.d=c." + dom, "header.d=e." + dom}},
			{Name: "SPF_PASS", Options: []string{"smtp.mailfrom=news@" + dom}},
			{Name: "DMARC_PASS", Options: []string{"header.from=" + dom}},
		}}
	h := startScorer(t, verdictScorer{v}, nil)
	mods, act := send(t, h.session(t), baseMsg("hello\r\n"))
	if act.Code != gomilter.ActAccept {
		t.Fatalf("action %c", act.Code)
	}
	seen := map[string]bool{}
	for _, m := range mods {
		if m.Code != gomilter.ActAddHeader && m.Code != gomilter.ActChangeHeader {
			continue
		}
		seen[m.HeaderName] = true
		unfolded := checkFolded(t, m.HeaderName, m.HeaderValue)
		switch m.HeaderName {
		case "Subject":
			dec, err := new(mime.WordDecoder).DecodeHeader(unfolded)
			if err != nil || dec != " "+longSubject {
				t.Errorf("Subject decodes to %q (%v)", dec, err)
			}
		case "Authentication-Results":
			if !strings.Contains(unfolded, "dkim=fail header.d=e."+dom+";") || !strings.HasPrefix(unfolded, " mx.test; spf=pass") {
				t.Errorf("Authentication-Results unfolded %q", unfolded)
			}
		}
	}
	if !seen["Subject"] || !seen["Authentication-Results"] {
		t.Errorf("fields changed: %v", seen)
	}
}

// Through Postfix: the rewritten subject reaches the mailbox whole.
func TestPostfixLongEncodedSubject(t *testing.T) {
	testenv.Need(t, testenv.PostfixMaster, "swaks")
	sink := startSink(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	v := spam.Verdict{Score: 7, Required: 5, IsSpam: true, Action: spam.RewriteSubject, Subject: longSubject}
	srv, err := New(DefaultConfig(), verdictScorer{v}, slog.New(slog.NewTextHandler(testWriter{t}, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2e9)
		defer cancel()
		srv.Shutdown(ctx)
	})
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{Milter: "inet:" + ln.Addr().String(), LMTP: "inet:" + sink.addr})
	out, code := testenv.Swaks(t, pf.SMTPAddr, "--from", "promo@remote.test", "--to", "alice@example.com",
		"--header", "Subject: hello", "--body", "marker-long-subject")
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	msg := sink.wait(t, "marker-long-subject")
	var subj string
	for _, line := range strings.Split(strings.SplitN(msg, "\r\n\r\n", 2)[0], "\r\n") {
		switch {
		case strings.HasPrefix(line, "Subject:"):
			subj = strings.TrimPrefix(line, "Subject:")
		case subj != "" && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")):
			subj += line
		case subj != "":
			goto done
		}
	}
done:
	if dec, err := new(mime.WordDecoder).DecodeHeader(subj); err != nil || strings.TrimSpace(dec) != longSubject {
		t.Errorf("delivered Subject decodes to %q (%v); raw %q", dec, err, subj)
	}
}
