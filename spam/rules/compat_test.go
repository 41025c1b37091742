package rules

import (
	"context"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/dovetail-mail/dovetail/spam/message"
)

// TestTranslatePerlEscapes: a '+' after an escape ending in '}' is a
// quantifier, not a possessive marker; \v, \V, \h, \H and \R mean what they
// mean in Perl, not in RE2.
func TestTranslatePerlEscapes(t *testing.T) {
	cases := []struct {
		pat, in string
		match   bool
	}{
		{`/^\x{41}+B/`, "AAAB", true},
		{`/^\x{41}+B/`, "AB", true},
		{`/^\p{Lu}+b/`, "ABCb", true},
		{`/^\P{Lu}+B/`, "abcB", true},
		{`/^a{2}+b/`, "aab", true},     // possessive {2}
		{`/^a{2}+b/`, "aaab", false},   // … still exactly two
		{`/^\\*+x/`, `\\\x`, true},     // possessive star after an escaped backslash
		{`/^\++x/`, "+++x", true},      // \+ then a real quantifier
		{`/^a*?b/`, "aab", true},       // lazy stays lazy
		{`/^a{,2}b/`, "a{,2}b", true},  // not a counted repetition in Perl < 5.34: literal
		{`/a\vb/`, "a\nb", true},       // Perl \v: any vertical white space
		{`/a\vb/`, "a\rb", true},       //
		{`/a\vb/`, "a\u2028b", true},   //
		{`/a\vb/`, "a b", false},       //
		{`/a[\v]b/`, "a\fb", true},     //
		{`/a\Vb/`, "a b", true},        // \V: anything else
		{`/a\Vb/`, "a\nb", false},      //
		{`/a\hb/`, "a\u00a0b", true},   // \h: horizontal white space, no-break space included
		{`/a\hb/`, "a\nb", false},      //
		{`/a[\h]b/`, "a\u3000b", true}, //
		{`/a\Hb/`, "a\tb", false},      //
		{`/a\Hb/`, "axb", true},        //
		{`/a\Rb/`, "a\r\nb", true},     // \R: a line break, CRLF as one
		// Byte escapes spelling UTF-8 match that character, as they do in
		// SpamAssassin's byte strings; other \xHH stay Latin-1 code points.
		{`/x\xe2\x80\x8by/`, "x\u200by", true},
		{`/^\xe2\x80\x8b+$/`, "\u200b\u200b", true},
		{`/caf\xc3\xa9/i`, "CAFÉ", true},
		{`/\xf0\x9f\x92\xb0/`, "💰", true},
		{`/\xef\xbf\xbd/`, "\ufffd", true},
		{`/caf\xe9/`, "café", true},
		{`/\x41\xc3\xa9/`, "Aé", true},
		{`/\xe2\x80/`, "\u200b", false},
		{`/[\xe9]/`, "é", true},
	}
	for _, c := range cases {
		body, flags, err := splitPattern(c.pat)
		if err != nil {
			t.Fatalf("%s: %v", c.pat, err)
		}
		re, err := translate(body, flags)
		if err != nil {
			t.Errorf("%s: %v", c.pat, err)
			continue
		}
		if re.MatchString(c.in) != c.match {
			t.Errorf("%s (RE2 %s) on %q: match=%v, want %v", c.pat, re, c.in, !c.match, c.match)
		}
	}
}

func parseSet(t *testing.T, text string) (*Set, []Problem) {
	t.Helper()
	p := NewParser(nil)
	if err := p.Parse("t.cf", strings.NewReader(text)); err != nil {
		t.Fatal(err)
	}
	return p.Build(nil), p.Problems
}

// TestIfVersion: "if" conditions are evaluated against SpamAssassin 3.4.6;
// blocks for older versions (and for Perl features we lack) are skipped.
func TestIfVersion(t *testing.T) {
	set, probs := parseSet(t, `
if (version < 3.000000)
body OLD_ONLY /x/
endif
if (version >= 3.004000)
body NEW_ONLY /x/
else
body NEW_ELSE /x/
endif
if version > 4.000000
body FUTURE /x/
endif
if can(Mail::SpamAssassin::Conf::feature_bayes_stopwords)
body NEEDS_FEATURE /x/
endif
if !can(Mail::SpamAssassin::Conf::feature_bayes_stopwords)
body FALLBACK /x/
endif
if (version >= 3.003000 && !plugin(Mail::SpamAssassin::Plugin::Foo)) || 0
body COMPOUND /x/
endif
if (frobnicate(1))
body UNREADABLE /x/
endif
`)
	for name, want := range map[string]bool{"OLD_ONLY": false, "NEW_ONLY": true, "NEW_ELSE": false, "FUTURE": false,
		"NEEDS_FEATURE": false, "FALLBACK": true, "COMPOUND": true, "UNREADABLE": false} {
		if got := set.Lookup(name) != nil; got != want {
			t.Errorf("%s loaded = %v, want %v", name, got, want)
		}
	}
	if len(probs) != 1 || !strings.Contains(probs[0].String(), "t.cf:22: if") {
		t.Errorf("problems %v, want one for the unreadable if", probs)
	}
}

// TestTflagsLastWins: SpamAssassin keeps the last tflags line of a rule.
func TestTflagsLastWins(t *testing.T) {
	set, _ := parseSet(t, "body A /x/\ntflags A multiple noautolearn\ntflags A nice\n")
	if r := set.Lookup("A"); r.Has("multiple") || r.Has("noautolearn") || !r.Has("nice") {
		t.Errorf("tflags %v, want [nice]", r.TFlags)
	}
}

// TestEmptyPatternIsAProblem: // would match every message.
func TestEmptyPatternIsAProblem(t *testing.T) {
	set, probs := parseSet(t, "body EMPTY //\nheader EMPTYH Subject =~ //i\nbody OK /x/\n")
	if set.Lookup("EMPTY") != nil || set.Lookup("EMPTYH") != nil || set.Lookup("OK") == nil {
		t.Errorf("rules %v", set.Rules())
	}
	if len(probs) != 2 || !strings.Contains(probs[0].Msg, "empty pattern") {
		t.Errorf("problems %v", probs)
	}
}

func hits(t *testing.T, set *Set, raw string) map[string]int {
	t.Helper()
	c := &Context{Msg: message.Parse([]byte(raw), message.Limits{})}
	got := map[string]int{}
	for _, h := range set.Run(context.Background(), c) {
		got[h.Rule.Name] = h.Count
	}
	return got
}

// TestMultipleMaxhits: a multiple rule counts its hits up to maxhits.
func TestMultipleMaxhits(t *testing.T) {
	set, _ := parseSet(t, `
body R /free/
tflags R multiple maxhits=3
body ALL /free/
tflags ALL multiple
body ONCE /free/
header H Subject =~ /x/
tflags H multiple maxhits=2
uri U /example/
tflags U multiple
meta M R > 2
`)
	got := hits(t, set, "Subject: xxx\n\nfree free free free\n\nfree free http://example.com/ http://www.example.com/\n")
	for name, want := range map[string]int{"R": 3, "ALL": 6, "ONCE": 1, "H": 2, "U": 2, "M": 1} {
		if got[name] != want {
			t.Errorf("%s: %d hits, want %d (%v)", name, got[name], want, got)
		}
	}
}

// TestURICanonicalForms: uri rules also see SpamAssassin's canonical forms:
// scheme added to www. and ftp. names, %-escapes decoded, user info and a
// redirect target split off, a hexadecimal/octal/decimal IPv4 host as its
// dotted quad.
func TestURICanonicalForms(t *testing.T) {
	set, probs := parseSet(t, `
uri WWW      m{^http://www\.example\.com/}
uri ENCODED  m{^http://evil\.example/}
uri USERINFO m{^http://host\.example/}
uri REDIRECT m{^http://target\.example}
uri MAILTO   m{^http://.*bob}
uri IP       m{^https?://74\.125\.224\.25/}
`)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	got := hits(t, set, "Subject: s\n\nsee www.example.com/page and http://%65vil.example/x and "+
		"http://user@host.example/ and http://r.example/go?u=http://target.example/ mailto:bob@example.com "+
		"http://0x4a.0x7d.0xe0.0x19/buy\n")
	for _, name := range []string{"WWW", "ENCODED", "USERINFO", "REDIRECT", "IP"} {
		if got[name] == 0 {
			t.Errorf("%s did not hit: %v", name, got)
		}
	}
	if got["MAILTO"] != 0 {
		t.Error("mailto: was given an http:// form")
	}
	for raw, want := range map[string]string{"ftp.example.org/pub": "ftp://ftp.example.org/pub",
		`http:\\example.com\x`: "http://example.com/x", "http:example.com": "http://example.com",
		"http://example.com?id=1": "http://example.com/?id=1", "http://example.com.../": "http://example.com/"} {
		if forms := canonicalURIs(raw); !slices.Contains(forms, want) {
			t.Errorf("canonical forms of %q: %q, want %q among them", raw, forms, want)
		}
	}
}

func TestIfDeepNesting(t *testing.T) {
	if _, err := evalIf(strings.Repeat("(", 100000) + "1" + strings.Repeat(")", 100000)); err == nil {
		t.Error("100,000 nested parentheses accepted")
	}
	if ok, err := evalIf("((version >= 3.004000))"); !ok || err != nil {
		t.Errorf("nested version test: %v %v", ok, err)
	}
}

// TestPrefilterCaseFolding: the literal prefilter must never skip a text the
// regex matches. Under /i, RE2 folds case by Unicode's simple folding, in
// which "ſ" (long s) is an "s" and "µ" a "μ", but strings.ToLower leaves
// them as they are: "caſino" and "buy ſex" passed /casino/i and /sex/i
// because the lower-cased text lacked the literal.
func TestPrefilterCaseFolding(t *testing.T) {
	set, probs := parseSet(t, `
body    B_CASINO /online casino/i
rawbody R_CASINO /online casino/i
full    F_CASINO /online casino/i
body    B_MICRO  /μg dose/i
body    B_KELVIN /kelvin/i
`)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	got := hits(t, set, "Subject: s\n\nOnline caſino, 5 µG DOSE, \u212aelvin\n")
	for _, name := range []string{"B_CASINO", "R_CASINO", "F_CASINO", "B_MICRO", "B_KELVIN"} {
		r := set.Lookup(name)
		if got[name] == 0 {
			t.Errorf("%s (prefilter %q) did not hit", name, r.pre)
		}
	}
}

// TestFoldCaseOrbits: foldCase gives every rune of a folding orbit the same
// value, and the ASCII fast path agrees with the general one.
func TestFoldCaseOrbits(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		want := foldRune(r)
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if got := foldRune(f); got != want {
				t.Fatalf("foldRune(%U) = %U, foldRune(%U) = %U", r, want, f, got)
			}
		}
		if r < utf8.RuneSelf && foldCase(string(r)) != string(want) {
			t.Fatalf("foldCase(%q) = %q, want %q", r, foldCase(string(r)), want)
		}
	}
}

// TestScoreNotFinite: strconv.ParseFloat reads "nan" and "inf", which no
// score can be: one NaN made every verdict's sum NaN, and +Inf rounded to
// a huge negative score — both "no action" for every message.
func TestScoreNotFinite(t *testing.T) {
	set, probs := parseSet(t, "body A /x/\nscore A nan\nbody B /x/\nscore B 1 2 +Inf 4\nbody C /x/\nscore C -infinity\n")
	if len(probs) != 3 {
		t.Fatalf("problems %v, want one each for A, B, C", probs)
	}
	for i, name := range []string{"A", "B", "C"} {
		if !strings.HasPrefix(probs[i].String(), "t.cf:"+string(rune('2'+2*i))+": score "+name) {
			t.Errorf("problem %d: %s", i, probs[i])
		}
		if r := set.Lookup(name); r.Score != 1 {
			t.Errorf("%s scores %v, want the default 1", name, r.Score)
		}
	}
}

// TestMetaOnSkippedRule: a meta using a rule that was skipped (a pattern RE2
// cannot run) read it as "no hit", silently: "A && !__B" then fired on
// every A — a rule that SpamAssassin runs narrowly ran broadly here. Such a
// meta is skipped with a file:line problem, and so is a meta using it; a
// name defined nowhere (an ifplugin rule) still reads 0, as in SpamAssassin.
func TestMetaOnSkippedRule(t *testing.T) {
	set, probs := parseSet(t, `header A Subject =~ /a/
header __B Subject =~ /(?<=x)a/
meta M1 A && !__B
meta M2 M1 || A
meta M3 A && !__NOWHERE
meta C1 C2
meta C2 C1
`)
	got := hits(t, set, "Subject: a\n\nbody\n")
	if got["M1"] != 0 || got["M2"] != 0 || got["M3"] != 1 {
		t.Errorf("hits %v, want M3 alone of the metas", got)
	}
	var joined []string
	for _, p := range probs {
		joined = append(joined, p.String())
	}
	for _, want := range []string{"t.cf:2: header __B", "t.cf:3: meta M1: uses __B, which was skipped",
		"t.cf:4: meta M2: uses M1, which was skipped", "t.cf:7: meta C2: dependency cycle through C1"} {
		if !strings.Contains(strings.Join(joined, "\n"), want) {
			t.Errorf("problem %q missing from %q", want, joined)
		}
	}
	if len(probs) != 5 {
		t.Errorf("%d problems, want 5: %q", len(probs), joined)
	}
}

// TestMetaOnIgnoredRuleDirective: mimeheader and askdns define rules that
// are accepted but not run here. A meta using one read it as "no hit" with
// no word — "A && !__MIME_B" fired on every A, the hole TestMetaOnSkippedRule
// closed for skipped patterns — so such a meta is skipped with a problem.
func TestMetaOnIgnoredRuleDirective(t *testing.T) {
	set, probs := parseSet(t, `header A Subject =~ /a/
mimeheader __MIME_B Content-Type =~ /text\/html/i
askdns __DNS_C _SENDERDOMAIN_ TXT /^v=spf1/
meta M1 A && !__MIME_B
meta M2 A && !__DNS_C
`)
	got := hits(t, set, "Subject: a\n\nbody\n")
	if got["M1"] != 0 || got["M2"] != 0 {
		t.Errorf("hits %v, want no meta", got)
	}
	joined := ""
	for _, p := range probs {
		joined += p.String() + "\n"
	}
	for _, want := range []string{"t.cf:4: meta M1: uses __MIME_B", "t.cf:5: meta M2: uses __DNS_C"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problem %q missing from %q", want, joined)
		}
	}
}

// TestTabSeparatedFields: SpamAssassin splits a line's fields on any white
// space (split /\s+/), and rule files aligned with tabs are common. A tab
// between the rule name and its definition dropped the rule as an "invalid
// rule name", and one after describe's name filed the text under a name
// that does not exist.
func TestTabSeparatedFields(t *testing.T) {
	set, probs := parseSet(t, "body\tTAB_BODY\t/free/\ndescribe\tTAB_BODY\tSays free\nscore\tTAB_BODY\t2.5\n"+
		"header TAB_HDR\tSubject =~ /free/\nmeta TAB_META\t \tTAB_BODY && TAB_HDR\n")
	if len(probs) != 0 {
		t.Errorf("problems %v", probs)
	}
	r := set.Lookup("TAB_BODY")
	if r == nil || r.Score != 2.5 || r.Description != "Says free" {
		t.Fatalf("TAB_BODY = %+v", r)
	}
	got := hits(t, set, "Subject: free\n\nfree\n")
	for _, name := range []string{"TAB_BODY", "TAB_HDR", "TAB_META"} {
		if got[name] != 1 {
			t.Errorf("%s did not hit: %v", name, got)
		}
	}
}
