package rules

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dovetail-mail/dovetail/spam/message"
)

func TestTranslate(t *testing.T) {
	cases := []struct {
		pat, in string
		match   bool
		perl    bool
	}{
		{`/foo bar/i`, "FOO BAR", true, false},
		{`/f o o # comment
		   bar/x`, "foobar", true, false},
		{`m{a\Q.*\E}`, "a.*", true, false},
		{`m{a\Q.*\E}`, "abc", false, false},
		{`/a++b/`, "aaab", true, false},
		{`/(?>ab)c/`, "abc", true, false},
		{`/^line2$/m`, "line1\nline2\n", true, false},
		{`/foo(?=bar)/`, "", false, true},
		{`/(a)\1/`, "", false, true},
		{`/(?<!x)y/`, "", false, true},
	}
	for _, c := range cases {
		body, flags, err := splitPattern(c.pat)
		if err != nil {
			t.Fatalf("%s: %v", c.pat, err)
		}
		re, err := translate(body, flags)
		if c.perl {
			if !errors.Is(err, ErrPerlOnly) {
				t.Errorf("%s: want ErrPerlOnly, got %v", c.pat, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.pat, err)
			continue
		}
		if re.MatchString(c.in) != c.match {
			t.Errorf("%s on %q: match=%v", c.pat, c.in, !c.match)
		}
	}
}

const sample = `# sample
header   SUBJ_FREE  Subject =~ /\bfree\b/i
describe SUBJ_FREE  Free in subject
score    SUBJ_FREE  1.5
header   NO_XM      X-Mailer !~ /./
body     BODY_WIN   /you (?:have )?won/i
rawbody  RAW_FONT   /<font/i
uri      URI_BIZ    /\.biz\b/
full     FULL_ANY   /^Subject:/m
header   __FROM_X   From:addr =~ /\@x\.test$/
meta     COMBO      SUBJ_FREE && (BODY_WIN || __FROM_X) && !NOPE
score    COMBO      2 3 4 5
tflags   COMBO      nice
header   LOOK       Subject =~ /(?<=a)b/
body     BAD_EVAL   eval:no_such_function()
ifplugin Mail::SpamAssassin::Plugin::Foo
body     SKIPPED    /x/
endif
meta     CYC1 CYC2
meta     CYC2 CYC1
frobnicate 1
`

func TestParseAndRun(t *testing.T) {
	p := NewParser(nil)
	if err := p.Parse("sample.cf", strings.NewReader(sample)); err != nil {
		t.Fatal(err)
	}
	set := p.Build(nil)
	var probs []string
	for _, pr := range p.Problems {
		probs = append(probs, pr.String())
	}
	joined := strings.Join(probs, "\n")
	for _, want := range []string{"sample.cf:14: header LOOK", "sample.cf:15: body BAD_EVAL", "CYC", "sample.cf:21: unknown directive"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problem %q not reported in:\n%s", want, joined)
		}
	}
	if set.Lookup("SKIPPED") != nil || set.Lookup("LOOK") != nil {
		t.Error("skipped rules were loaded")
	}
	if r := set.Lookup("COMBO"); r == nil || r.Score != 4 || !r.Has("nice") {
		t.Errorf("COMBO = %+v", r)
	}
	raw := "From: Win <a@x.test>\nSubject: Free stuff\nContent-Type: text/html\n\n<font>You have WON</font> <a href=\"http://a.biz/\">x</a>"
	c := &Context{Msg: message.Parse([]byte(raw), message.Limits{})}
	got := map[string]bool{}
	for _, h := range set.Run(context.Background(), c) {
		got[h.Rule.Name] = true
	}
	for _, want := range []string{"SUBJ_FREE", "NO_XM", "BODY_WIN", "RAW_FONT", "URI_BIZ", "FULL_ANY", "__FROM_X", "COMBO"} {
		if !got[want] {
			t.Errorf("%s did not hit; hits %v", want, got)
		}
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add(sample)
	f.Add("meta A (B && (C || !D)) + 2 > 1\nheader X Subject =~ m{a}i [if-unset: x]")
	f.Fuzz(func(t *testing.T, text string) {
		p := NewParser(nil)
		_ = p.Parse("fuzz.cf", strings.NewReader(text))
		set := p.Build(nil)
		c := &Context{Msg: message.Parse([]byte("Subject: a\n\nb"), message.Limits{})}
		set.Run(context.Background(), c)
	})
}

// A line too long to read is a problem at its own line, like any bad rule:
// the rest of the file still loads. It used to end the file with an error
// naming the line before it, and the engine refused to start.
func TestTooLongLineIsAProblem(t *testing.T) {
	text := "body A /a/\r\nbody B /" + strings.Repeat("b", 1<<20) + "/\r\nbody C /c/\nbody D /d/"
	p := NewParser(nil)
	if err := p.Parse("long.cf", strings.NewReader(text)); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	set := p.Build(nil)
	if len(p.Problems) != 1 || !strings.HasPrefix(p.Problems[0].String(), "long.cf:2: line longer than") {
		t.Errorf("problems %v, want one at long.cf:2", p.Problems)
	}
	for _, name := range []string{"A", "C", "D"} {
		if set.Lookup(name) == nil {
			t.Errorf("rule %s not loaded", name)
		}
	}
	if set.Lookup("B") != nil {
		t.Error("the too-long rule was loaded")
	}
}
