package policyd

import (
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/internal/testenv"
)

func TestLiteralTail(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{`^ms-smtp.*\.rr\.com$`, ".rr.com"},
		{`^mta[12].siol.net$`, "net"},
		{`^smtp\d+\.ORANGE\.fr$`, ".orange.fr"},
		{`(?i)(?:^mail\d+\.telekom\.de$)`, ".telekom.de"},
		{`^mx\d+\..*\.inode\.at\z`, ".inode.at"},
		{`^a\.com`, ""},               // not anchored at the end
		{`(?m)^a\.com$`, ""},          // end of line, not of text
		{`^(a|b)\.com$|^c$`, ""},      // alternation at the top
		{`^x\.caf\x{e9}\.fr$`, ".fr"}, // stops at non-ASCII
		{`^x\.\x{e9}$`, ""},
		{`^x\.\x{212a}\.de$`, "x.k.de"}, // the Kelvin sign folds to k under (?i)
	} {
		expr := tc.expr
		if !strings.HasPrefix(expr, "(?i)") {
			expr = "(?i)(?:" + expr + ")"
		}
		if got := literalTail(expr); got != tc.want {
			t.Errorf("literalTail(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// TestPatternSetMatchesAlternation checks that the indexed set answers exactly
// what the one-alternation expression answers, on crafted patterns and subjects
// and on random subjects built from the patterns' own text.
func TestPatternSetMatchesAlternation(t *testing.T) {
	pats := []string{
		`^ms-smtp.*\.rr\.com$`, `^mta[12].siol.net$`, `^smtp\d+\.orange\.fr$`, `^s[cv]\d+pub\.verizon\.net$`,
		`^(?:smtp\w*|postfix)[0-9]+-g[0-9]+\.free\.fr$`, `^.*?.server.arvato-systems.de$`, `mail\.example\.org`,
		`^x\.K\.de$`, `(?-i:^UPPER\.Example\.com$)`, `^bounce\d*$`, `(?m)^line\.net$`, `^a$|^b\.com$`, `\.$`,
		`^caf\x{e9}\.fr$`, `^postmaster@`,
	}
	subjects := []string{
		"", ".", "ms-smtp-1.rr.com", "MS-SMTP-1.RR.COM", "ms-smtp-1.rr.com.", "mta1.siol.net", "mta1xsiolxnet",
		"smtp12.orange.fr", "smtp.orange.fr", "sc7pub.verizon.net", "smtpx12-g3.free.fr", "postfix1-g2.free.fr",
		"a.b.server.arvato-systems.de", "mail.example.org", "mail.example.org.evil", "x.k.de", "x.K.de",
		"x.\u212a.de", "UPPER.Example.com", "upper.example.com", "bounce", "bounce12", "line.net", "a", "b.com",
		"trailing.", "café.fr", "CAFÉ.fr", "postmaster@example.com", "example.com", "com", "rr.com",
	}
	ps, err := newPatternSet(pats)
	if err != nil {
		t.Fatal(err)
	}
	matched := 0
	check := func(ps *patternSet, s string) {
		t.Helper()
		got, want := ps.match(s), ps.all.MatchString(s)
		if got != want {
			t.Errorf("match(%q) = %v, alternation says %v", s, got, want)
		}
		if want {
			matched++
		}
	}
	for _, s := range subjects {
		check(ps, s)
	}
	// Random subjects assembled from fragments of the patterns' literals and of
	// the subjects above, so that near misses are common.
	var frags []string
	for _, s := range subjects {
		frags = append(frags, strings.Split(s, ".")...)
	}
	frags = append(frags, "ms-smtp", "rr", "com", "net", "siol", "mta2", "sv9pub", "verizon", "free", "fr", "g1", "smtpz9", "de", "server")
	rnd := rand.New(rand.NewPCG(5, 5))
	gen := func() string {
		parts := make([]string, 1+rnd.IntN(5))
		for i := range parts {
			parts[i] = frags[rnd.IntN(len(frags))]
		}
		return strings.Join(parts, ".")
	}
	for range 20000 {
		check(ps, gen())
	}
	if matched < 100 {
		t.Fatalf("only %d subjects matched: the random subjects do not exercise matches", matched)
	}
	t.Logf("%d of %d subjects matched", matched, 20000+len(subjects))

	// The peer's Debian whitelist (skipped without the shared material).
	t.Run("debian-whitelist", func(t *testing.T) {
		var wl []string
		err := readList(filepath.Join(testenv.SharedDir(t), "peers", "policy", "whitelist_clients"), func(e string) error {
			if isRegexEntry(e) {
				wl = append(wl, e[1:len(e)-1])
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		deb, err := newPatternSet(wl)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"ms-smtp-03.texas.rr.com", "smtp3.orange.fr", "mail7.telekom.de", "mx12.foo.inode.at", "gw.arvato.de"} {
			check(deb, s)
		}
		for range 20000 {
			check(deb, gen())
		}
	})
}

func TestPatternSetEmpty(t *testing.T) {
	ps, err := newPatternSet(nil)
	if err != nil || ps != nil {
		t.Fatalf("newPatternSet(nil) = %v, %v", ps, err)
	}
	if ps.match("anything") {
		t.Error("an empty set matched")
	}
	if _, err := newPatternSet([]string{`^ok$`, `(`}); err == nil || !strings.Contains(err.Error(), "pattern /(/") {
		t.Errorf("invalid entry: err = %v", err)
	}
}
