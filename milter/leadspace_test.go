package milter

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"

	gomilter "github.com/emersion/go-milter"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/dovetail-mail/dovetail/spam"
)

// testDKIMKey signs for auth.example (selector "sel", published by
// integrationScorer's zone).
var testDKIMKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func testDKIMRecord() string {
	return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(testDKIMKey.Public().(ed25519.PublicKey))
}

// simpleSigned is a c=simple/simple signed message whose header fields have
// no space, a tab, or two spaces after the colon: simple canonicalization
// hashes them as they are, so the milter must hand them on unchanged.
func simpleSigned(t *testing.T, marker string) string {
	t.Helper()
	raw := "From: news@auth.example\r\nTo: alice@example.com\r\nSubject:" + marker + "\r\nX-Tab:\thello\r\nX-Two:  spaces\r\n" +
		"X-Folded: one\r\n\ttwo\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + marker + "@auth.example>\r\n\r\nsigned body\r\n"
	var out bytes.Buffer
	if err := dkim.Sign(&out, strings.NewReader(raw), &dkim.SignOptions{
		Domain: "auth.example", Selector: "sel", Signer: testDKIMKey,
		HeaderCanonicalization: dkim.CanonicalizationSimple, BodyCanonicalization: dkim.CanonicalizationSimple,
	}); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func symbolNames(v *spam.Verdict) string {
	if v == nil {
		return "(not scanned)"
	}
	var n []string
	for _, s := range v.Symbols {
		n = append(n, s.Name)
	}
	return strings.Join(n, ",")
}

// The fields reach the scan as they were signed (values sent as Postfix does
// under SMFIP_HDR_LEADSPC), so a c=simple signature verifies.
func TestSimpleDKIMSurvivesRebuild(t *testing.T) {
	// DefaultConfig's scan timeout, not start's short one: the real scan verifies DKIM.
	h := startScorer(t, integrationScorer(t), func(c *Config) { c.ScanTimeout = DefaultConfig().ScanTimeout })

	// Field by field (send() would canonicalize the names, which c=simple
	// also hashes), values as Postfix sends them under SMFIP_HDR_LEADSPC.
	s := h.session(t)
	act, err := s.Mail("dkim@remote.test", nil)
	checkContinue(t, act, err)
	act, err = s.Rcpt("alice@example.test", nil)
	checkContinue(t, act, err)
	head, body, _ := strings.Cut(simpleSigned(t, "tight"), "\r\n\r\n")
	head = strings.ReplaceAll(head, "\r\n\t", "\n\t")
	head = strings.ReplaceAll(head, "\r\n ", "\n ")
	for _, f := range strings.Split(head, "\r\n") {
		name, value, _ := strings.Cut(f, ":")
		act, err := s.HeaderField(name, value)
		checkContinue(t, act, err)
	}
	act, err = s.HeaderEnd()
	checkContinue(t, act, err)
	if _, act, err = s.BodyReadFrom(strings.NewReader(body)); err != nil || act.Code != gomilter.ActAccept {
		t.Fatalf("end of message: %v %v", act, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reports) != 1 || !strings.Contains(symbolNames(h.reports[0].Verdict), "DKIM_VALID") {
		t.Fatalf("symbols %s, want DKIM_VALID", symbolNames(h.reports[0].Verdict))
	}
}

// Through a real Postfix: SMFIP_HDR_LEADSPC is honoured at milter protocol
// version 2, the signature still verifies, and the fields we add get exactly
// one space after the colon.
func TestPostfixSimpleDKIM(t *testing.T) {
	rig := startPostfixRig(t)
	c, err := smtp.Dial(rig.pf.SMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("dkim.test"); err != nil {
		t.Fatal(err)
	}
	if err := sendOne(c, "dkim@remote.test", simpleSigned(t, "marker-simple-dkim")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	rep := rig.report(t, func(r Report) bool { return r.From == "dkim@remote.test" })
	if !strings.Contains(symbolNames(rep.Verdict), "DKIM_VALID") {
		t.Errorf("symbols %s, want DKIM_VALID", symbolNames(rep.Verdict))
	}
	got := rig.sink.wait(t, "marker-simple-dkim")
	for _, want := range []string{"\r\nSubject:marker-simple-dkim\r\n", "\r\nX-Tab:\thello\r\n", "\r\nX-Two:  spaces\r\n", "\r\nX-Spam-Status: No, score=", "\r\nX-Spam-Score: "} {
		if !strings.Contains(got, want) {
			t.Errorf("delivered message lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, ":  No") || strings.Contains(got, "Authentication-Results:  ") {
		t.Errorf("added field with two spaces:\n%s", got)
	}
}
