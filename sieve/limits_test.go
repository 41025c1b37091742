package sieve

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// nestedMIME builds depth nested multipart/mixed parts around a text part of
// size empty lines.
func nestedMIME(depth, size int) []byte {
	var b strings.Builder
	b.WriteString("From: a@example.org\r\nSubject: nested\r\n")
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\n")
	b.WriteString(strings.Repeat("\r\n", size/2))
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "\r\n--b%d--\r\n", i)
	}
	return []byte(b.String())
}

// TestNestedMIMEIsLinear: every nesting level used to split its whole body
// into lines and copy it (31 levels around 10 MiB: gigabytes, seconds).
func TestNestedMIMEIsLinear(t *testing.T) {
	raw := nestedMIME(31, 10<<20)
	s := mustCompile(t, `require "body"; if body :text :contains "zz" { discard; }`)
	var res *Result
	var err error
	start := time.Now()
	n := allocated(func() {
		res, err = s.Execute(context.Background(), &Env{Message: NewMessage(raw)})
	})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %v", el)
	}
	if n > 3*uint64(len(raw)) {
		t.Errorf("allocated %d MiB for a %d MiB message", n>>20, len(raw)>>20)
	}
	if got := actSummary(res); len(got) != 1 || got[0] != "keep:INBOX*" {
		t.Errorf("actions %q", got)
	}
	// The innermost text part is found (31 multiparts and the text part).
	m := NewMessage(raw)
	parts := m.mimeRoot().all(nil)
	if len(parts) != 32 || parts[31].ctype != "text/plain" || len(parts[31].body) != 10<<20 {
		t.Errorf("%d parts, innermost %s with %d bytes", len(parts), parts[len(parts)-1].ctype, len(parts[len(parts)-1].body))
	}
}

// TestMIMEPartLimit: the parts of a message are capped like Dovecot's parser
// does.
func TestMIMEPartLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=x\r\n\r\n")
	for i := 0; i < maxMimeParts+500; i++ {
		b.WriteString("--x\r\n\r\np\r\n")
	}
	b.WriteString("--x--\r\n")
	parts := NewMessage([]byte(b.String())).mimeRoot().all(nil)
	if len(parts) != maxMimeParts {
		t.Errorf("%d parts, want %d", len(parts), maxMimeParts)
	}
}

// TestExpandStopsAtLimit: a string with 200,000 references to a 4 KB variable
// was built in full (gigabytes) before being cut to 16 KB.
func TestExpandStopsAtLimit(t *testing.T) {
	src := `require "variables"; set "a" "` + strings.Repeat("x", 4000) + `"; set "b" "` +
		strings.Repeat("${a}", 200000) + `"; if string :is "${b}" "" { discard; }`
	s := mustCompile(t, src)
	var res *Result
	var err error
	n := allocated(func() {
		res, err = s.Execute(context.Background(), &Env{Message: NewMessage([]byte(testMsg))})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n > 8<<20 {
		t.Errorf("allocated %d MiB", n>>20)
	}
	if got := actSummary(res); len(got) != 1 || got[0] != "keep:INBOX*" {
		t.Errorf("actions %q", got)
	}
	// The value is still the prefix that fits.
	res = execute(t, `require "variables"; set "a" "`+strings.Repeat("y", 4096)+`"; set "b" "${a}${a}z";
		if string :is "${b}" "`+strings.Repeat("y", 4096)+`" { discard; }`)
	if got := actSummary(res); len(got) != 1 || got[0] != "discard" {
		t.Errorf("truncated value: actions %q", got)
	}
}

// TestFailureKeepsEarlierScripts: a runtime error drops the failing script's
// own actions (Pigeonhole never executes them) but not those of the scripts
// that finished before it, which Pigeonhole has executed by then.
func TestFailureKeepsEarlierScripts(t *testing.T) {
	before := mustCompile(t, `require ["fileinto","copy","mailbox"]; fileinto :create :copy "Archive";`)
	user := mustCompile(t, `require ["fileinto","copy","vacation","duplicate"];
		if duplicate { stop; }
		fileinto :copy "Mine"; vacation "away";
		redirect "a@x.org"; redirect "b@x.org"; redirect "c@x.org"; redirect "d@x.org"; redirect "e@x.org";`)
	res, err := RunMulti(context.Background(), &Env{Message: NewMessage([]byte(testMsg))}, []*Script{before}, user, nil)
	if err == nil || len(res.Errors) != 1 {
		t.Fatalf("err %v, errors %v", err, res.Errors)
	}
	if got, want := actSummary(res), []string{"fileinto:Archive+copy", "keep:INBOX*"}; !reflect.DeepEqual(got, want) {
		t.Errorf("actions %q, want %q", got, want)
	}
	if len(res.DuplicateMarks) != 0 {
		t.Errorf("the failing script's duplicate marks were kept: %v", res.DuplicateMarks)
	}
}

// refGlob is the matcher this package used to have: backtracking over every
// star, each taking the shortest value first (i;octet). Exponential, so only
// for small inputs.
func refGlob(val string, elems []pe) (bool, []string) {
	var caps []string
	var rec func(ei, vi int) bool
	rec = func(ei, vi int) bool {
		if ei == len(elems) {
			return vi == len(val)
		}
		switch e := elems[ei]; e.kind {
		case 'l':
			return strings.HasPrefix(val[vi:], e.lit) && rec(ei+1, vi+len(e.lit))
		case '?':
			if vi == len(val) {
				return false
			}
			caps = append(caps, val[vi:vi+1])
			if rec(ei+1, vi+1) {
				return true
			}
			caps = caps[:len(caps)-1]
			return false
		}
		for n := vi; n <= len(val); n++ {
			caps = append(caps, val[vi:n])
			if rec(ei+1, n) {
				return true
			}
			caps = caps[:len(caps)-1]
		}
		return false
	}
	if !rec(0, 0) {
		return false, nil
	}
	return true, append([]string{val}, caps...)
}

// TestGlobMatchesReference: the linear matcher finds the same matches and
// match values as exhaustive backtracking.
func TestGlobMatchesReference(t *testing.T) {
	alpha := []string{"a", "b", "*", "?", `\*`, `\?`, "ab"}
	rnd := uint32(1)
	next := func(n int) int {
		rnd = rnd*1664525 + 1013904223
		return int(rnd>>8) % n
	}
	for i := 0; i < 20000; i++ {
		var pat, val strings.Builder
		for j := next(7); j > 0; j-- {
			pat.WriteString(alpha[next(len(alpha))])
		}
		for j := next(9); j > 0; j-- {
			val.WriteString([]string{"a", "b", "*", "?"}[next(4)])
		}
		elems := tokenizeGlob(pat.String())
		wantOK, wantCaps := refGlob(val.String(), elems)
		gotOK, gotCaps, err := globElems(cmpOctet, val.String(), newGlob(elems), true, nil)
		if err != nil || gotOK != wantOK || !reflect.DeepEqual(gotCaps, wantCaps) {
			t.Fatalf("%q :matches %q: got %v %q, want %v %q", val.String(), pat.String(), gotOK, gotCaps, wantOK, wantCaps)
		}
		// i;unicode-casemap on ASCII input agrees as well.
		uOK, uCaps, _ := globRunes(val.String(), newGlob(elems), true, nil)
		if uOK != wantOK || !reflect.DeepEqual(uCaps, wantCaps) {
			t.Fatalf("unicode: %q :matches %q: got %v %q, want %v %q", val.String(), pat.String(), uOK, uCaps, wantOK, wantCaps)
		}
	}
}

// TestMatchesManyStars: backtracking over 1000 stars against a 2,000-character
// Subject took seconds per key (minutes for a script of such keys).
func TestMatchesManyStars(t *testing.T) {
	subject := strings.Repeat("a", 2000)
	key := `"` + strings.Repeat("*a", 1000) + `*b"`
	keys := strings.TrimSuffix(strings.Repeat(key+",", 40), ",")
	msg := "Subject: " + subject + "\r\n\r\nbody\r\n"
	for _, cmp := range []string{"i;octet", "i;ascii-casemap", "i;unicode-casemap"} {
		s := mustCompile(t, `require ["variables","fileinto"]; if header :comparator "`+cmp+`" :matches "subject" [`+keys+`] { discard; }
			if header :comparator "`+cmp+`" :matches "subject" "*a?a*a" { set "m" "${1}|${2}|${3}"; }
			if string :is "${m}" "|a|`+strings.Repeat("a", 1996)+`" { fileinto "ok"; }`)
		start := time.Now()
		res, err := s.Execute(context.Background(), &Env{Message: NewMessage([]byte(msg))})
		if err != nil {
			t.Fatalf("%s: %v", cmp, err)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("%s: took %v", cmp, el)
		}
		if got := actSummary(res); !reflect.DeepEqual(got, []string{"fileinto:ok"}) {
			t.Errorf("%s: actions %q", cmp, got)
		}
	}
}

// TestMatchesChecksDeadline: one long :matches is interrupted at the CPU
// limit, with the usual runtime-error result (implicit keep).
func TestMatchesChecksDeadline(t *testing.T) {
	s, err := Compile("t", []byte(`require "body"; if body :raw :matches "*`+strings.Repeat("a", 3000)+`b*" { discard; }`),
		&Options{Limits: Limits{MaxCPUTime: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	msg := "Subject: x\r\n\r\n" + strings.Repeat("a", 2<<20)
	start := time.Now()
	res, err := s.Execute(context.Background(), &Env{Message: NewMessage([]byte(msg))})
	if err == nil || !strings.Contains(err.Error(), "CPU time") {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v", el)
	}
	if got := actSummary(res); !reflect.DeepEqual(got, []string{"keep:INBOX*"}) {
		t.Errorf("actions %q", got)
	}
}

// TestRegexWorkBounded: RE2 is linear, but in input × program size; this
// match ran 45 s with no error. It is now refused up front as a runtime error.
func TestRegexWorkBounded(t *testing.T) {
	s := mustCompile(t, `require ["body","regex"]; if body :raw :regex "`+strings.Repeat("(a|b)?", 600)+`z" { discard; }`)
	msg := "Subject: x\r\n\r\n" + strings.Repeat("a", 2<<20)
	start := time.Now()
	res, err := s.Execute(context.Background(), &Env{Message: NewMessage([]byte(msg))})
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v", el)
	}
	if got := actSummary(res); !reflect.DeepEqual(got, []string{"keep:INBOX*"}) {
		t.Errorf("actions %q", got)
	}
	// An ordinary regex on a large body still runs.
	s = mustCompile(t, `require ["body","regex"]; if body :raw :regex "a{3}$" { discard; }`)
	res, err = s.Execute(context.Background(), &Env{Message: NewMessage([]byte(msg))})
	if err != nil || !reflect.DeepEqual(actSummary(res), []string{"discard"}) {
		t.Errorf("simple regex: %v %q", err, actSummary(res))
	}
}

// TestRegexSizeLimits: counted repetitions compile to huge programs that a
// cached script keeps (".{1000}" 580 times: 26 MiB); one regex and all of a
// script's together are limited, with a positioned compile error.
func TestRegexSizeLimits(t *testing.T) {
	big := strings.Repeat(".{1000}", 580)
	_, err := Compile("t", []byte("require \"regex\";\nif header :regex \"subject\" \""+big+"\" { stop; }"), nil)
	var ce *CompileError
	if !errors.As(err, &ce) || len(ce.Errors) != 1 {
		t.Fatalf("err = %v", err)
	}
	e := ce.Errors[0]
	if e.Line != 2 || !strings.Contains(e.Msg, "too large") || len(e.Msg) > 300 || !strings.Contains(e.Msg, "...'") {
		t.Errorf("error %q at %d:%d", e.Msg, e.Line, e.Col)
	}

	// Each of these is allowed; together they are not.
	one := strings.Repeat(".{1000}", 7)
	var src strings.Builder
	src.WriteString(`require "regex";` + "\n")
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&src, "if header :regex \"subject\" \"%s%d\" { stop; }\n", one, i)
	}
	_, err = Compile("t", []byte(src.String()), nil)
	if !errors.As(err, &ce) || len(ce.Errors) != 1 || ce.Errors[0].Line != 6 || !strings.Contains(ce.Errors[0].Msg, "in total") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Compile("t", []byte(strings.Join(strings.SplitAfterN(src.String(), "\n", 6)[:5], "")), nil); err != nil {
		t.Errorf("fewer regexes: %v", err)
	}
}

// TestConcurrentBodyDecoding: executions share the Message; the decoded text
// of a part used to be cached without synchronisation (go test -race).
func TestConcurrentBodyDecoding(t *testing.T) {
	msg := NewMessage([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" +
		"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nK=E4se zz\r\n" +
		"--x\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+eno8L2I+\r\n--x--\r\n"))
	s := mustCompile(t, `require ["body","fileinto"]; if body :text :contains "käse" { fileinto "a"; } if body :text :contains "zz" { fileinto "b"; }`)
	done := make(chan []string, 8)
	for i := 0; i < 8; i++ {
		go func() {
			res, err := s.Execute(context.Background(), &Env{Message: msg})
			if err != nil {
				t.Error(err)
			}
			done <- actSummary(res)
		}()
	}
	for i := 0; i < 8; i++ {
		if got := <-done; !reflect.DeepEqual(got, []string{"fileinto:a", "fileinto:b"}) {
			t.Errorf("actions %q", got)
		}
	}
}

// A script that runs past the token limit inside a string list, a test list or
// a block must give a compile error: the parser used to skip tokens looking
// for the closing ']', ')' or '}' and never reached the end of the script (a
// managesieve PUTSCRIPT or an LMTP delivery hung at 100% CPU).
func TestTokenLimitEndsParse(t *testing.T) {
	opts := &Options{Limits: Limits{MaxTokens: 50}}
	for name, src := range map[string]string{
		"string list": `if header :is "a" [` + strings.Repeat(`"b",`, 60) + `"c"] { keep; }`,
		"test list":   `if ` + strings.Repeat(`anyof(`, 20) + `true` + strings.Repeat(`)`, 20) + ` { keep; }`,
		"blocks":      strings.Repeat(`if true {`, 20) + strings.Repeat(`}`, 20),
		"commands":    strings.Repeat(`keep; `, 60),
		"arguments":   strings.Repeat(`keep; `, 22) + `vacation ` + strings.Repeat(`:days 1 `, 8) + `"x";`,
	} {
		done := make(chan error, 1)
		go func() {
			_, err := Compile("t", []byte(src), opts)
			done <- err
		}()
		select {
		case err := <-done:
			var ce *CompileError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), "token limit") {
				t.Errorf("%s: got %v, want the token limit error", name, err)
			} else if len(ce.Errors) != 1 {
				t.Errorf("%s: want only the token limit error, got\n%v", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Compile did not return past the token limit", name)
		}
	}
}
