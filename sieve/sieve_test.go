package sieve

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const testMsg = "From: Alice <alice@example.org>\r\n" +
	"To: bob+lists@example.net\r\n" +
	"Subject: Hello world\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"X-Spam-Score: 6.5\r\n" +
	"\r\n" +
	"Hi Bob,\r\nthis is the body.\r\n"

func mustCompile(t testing.TB, src string) *Script {
	t.Helper()
	s, err := Compile("test.sieve", []byte(src), nil)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return s
}

func execute(t testing.TB, src string) *Result {
	t.Helper()
	res, err := mustCompile(t, src).Execute(context.Background(), &Env{
		Message:  NewMessage([]byte(testMsg)),
		Envelope: Envelope{From: "alice@example.org", To: "bob+lists@example.net"},
	})
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	return res
}

// summary renders actions compactly: type[:mailbox|address][+copy][{flags}][*implicit]
func actSummary(res *Result) []string {
	var out []string
	for _, a := range res.Actions {
		s := a.Type
		if a.Mailbox != "" {
			s += ":" + a.Mailbox
		}
		if a.Address != "" {
			s += ":" + a.Address
		}
		if a.Copy {
			s += "+copy"
		}
		if a.Flags != nil {
			s += "{" + strings.Join(a.Flags, " ") + "}"
		}
		if a.Implicit {
			s += "*"
		}
		out = append(out, s)
	}
	return out
}

func TestActionsSemantics(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"empty script keeps", ``, []string{"keep:INBOX*"}},
		{"discard cancels keep", `discard;`, []string{"discard"}},
		{"redirect cancels keep", `redirect "c@example.com";`, []string{"redirect:c@example.com"}},
		{"redirect :copy keeps", `require "copy"; redirect :copy "c@example.com";`, []string{"redirect:c@example.com+copy", "keep:INBOX*"}},
		{"fileinto :copy keeps", `require ["fileinto","copy"]; fileinto :copy "A";`, []string{"fileinto:A+copy", "keep:INBOX*"}},
		{"fileinto cancels keep", `require "fileinto"; fileinto "A";`, []string{"fileinto:A"}},
		{"duplicate fileinto merged", `require "fileinto"; fileinto "A"; fileinto "A";`, []string{"fileinto:A"}},
		{"duplicate redirect merged", `redirect "c@example.com"; redirect "C@Example.com";`, []string{"redirect:c@example.com"}},
		{"explicit keep", `keep; discard;`, []string{"keep:INBOX", "discard"}},
		{"stop keeps implicit", `stop; discard;`, []string{"keep:INBOX*"}},
		{"implicit keep with flags", `require "imap4flags"; setflag "\\Seen"; addflag "$Work";`, []string{`keep:INBOX{\Seen $Work}*`}},
		{"fileinto takes current flags", `require ["fileinto","imap4flags"]; addflag "\\Flagged"; fileinto "A"; removeflag "\\Flagged";`, []string{`fileinto:A{\Flagged}`}},
		{"fileinto :flags overrides", `require ["fileinto","imap4flags"]; addflag "x"; fileinto :flags "y" "A";`, []string{`fileinto:A{y}`}},
		{"fileinto :copy :flags keeps with current flags", `require ["fileinto","imap4flags","copy"]; addflag "x"; fileinto :copy :flags "y" "A";`, []string{`fileinto:A+copy{y}`, `keep:INBOX{x}*`}},
		{"explicit keep :flags", `require "imap4flags"; keep :flags "\\Seen";`, []string{`keep:INBOX{\Seen}`}},
		{"removeflag empties implicit keep flags", `require "imap4flags"; addflag "a"; removeflag "a";`, []string{`keep:INBOX*`}},
		{"duplicate keep merged", `keep; keep;`, []string{"keep:INBOX"}},
		{"discard does not cancel explicit fileinto", `require "fileinto"; discard; fileinto "A";`, []string{"discard", "fileinto:A"}},
		{"redirect :copy then discard", `require "copy"; redirect :copy "c@example.com"; discard;`, []string{"redirect:c@example.com+copy", "discard"}},
		{"keep and redirect", `keep; redirect "c@example.com";`, []string{"keep:INBOX", "redirect:c@example.com"}},
		{"fileinto INBOX cancels implicit keep", `require "fileinto"; fileinto "INBOX";`, []string{"fileinto:INBOX"}},
		{"stop after fileinto :copy keeps", `require ["fileinto","copy"]; fileinto :copy "A"; stop; discard;`, []string{"fileinto:A+copy", "keep:INBOX*"}},
		{"quarantine with explicit keep", `require "vnd.dovetail.quarantine"; quarantine; keep;`, []string{"quarantine", "keep:INBOX"}},
		{"quarantine after fileinto :copy", `require ["vnd.dovetail.quarantine","fileinto","copy"]; fileinto :copy "A"; quarantine;`, []string{"fileinto:A+copy", "quarantine"}},
		{"quarantine cancels keep", `require "vnd.dovetail.quarantine"; quarantine :reason "spam";`, []string{"quarantine"}},
		{"quarantine twice once", `require "vnd.dovetail.quarantine"; quarantine; quarantine;`, []string{"quarantine"}},
		{"subaddress", `require ["subaddress","fileinto","envelope"]; if envelope :detail "to" "lists" { fileinto "Lists"; }`, []string{"fileinto:Lists"}},
		{"spamtest unconfigured is 0", `require ["spamtest","relational","comparator-i;ascii-numeric","fileinto"]; if spamtest :value "eq" "0" { fileinto "Zero"; }`, []string{"fileinto:Zero"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := actSummary(execute(t, tc.src))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestQuarantineReason(t *testing.T) {
	res := execute(t, `require "vnd.dovetail.quarantine"; quarantine :reason "score ${1}";`)
	if len(res.Actions) != 1 || res.Actions[0].Reason != "score ${1}" || res.ImplicitKeep {
		t.Fatalf("got %+v", res)
	}
	// without the extension, quarantine is unknown
	if _, err := Compile("x", []byte(`quarantine;`), nil); err == nil {
		t.Fatal("quarantine without require compiled")
	}
}

func TestRuntimeErrorKeeps(t *testing.T) {
	s := mustCompile(t, `require ["reject","fileinto"]; fileinto "A"; reject "no";`)
	res, err := s.Execute(context.Background(), &Env{Message: NewMessage([]byte(testMsg))})
	if err == nil {
		t.Fatal("want runtime error for reject after fileinto")
	}
	// Pigeonhole executes none of the failing script's actions.
	got := actSummary(res)
	want := []string{"keep:INBOX*"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRedirectLimit(t *testing.T) {
	src := `redirect "a@x.org"; redirect "b@x.org"; redirect "c@x.org";`
	s, err := Compile("r", []byte(src), &Options{Limits: Limits{MaxRedirects: 2}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Execute(context.Background(), &Env{Message: NewMessage([]byte(testMsg))})
	var re *RuntimeError
	if !errors.As(err, &re) || !strings.Contains(re.Msg, "redirect") {
		t.Fatalf("err = %v", err)
	}
}

func TestStepLimit(t *testing.T) {
	src := strings.Repeat(`if header :contains "subject" "zzz" { stop; }`+"\n", 200)
	s, err := Compile("loop", []byte(src), &Options{Limits: Limits{MaxSteps: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Execute(context.Background(), &Env{Message: NewMessage([]byte(testMsg))}); err == nil {
		t.Fatal("step limit not enforced")
	}
}

func TestCompileErrorsAll(t *testing.T) {
	src := "require \"nosuchext\";\nfrobnicate;\nif header :is \"a\" {\n  keep;\n}\nfileinto \"x\";\n"
	_, err := Compile("bad.sieve", []byte(src), nil)
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	var got []string
	for _, e := range ce.Errors {
		got = append(got, e.Error()[:strings.Index(e.Error(), ": ")])
	}
	want := []string{"bad.sieve:1:9", "bad.sieve:2:1", "bad.sieve:3:4", "bad.sieve:6:1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("positions = %q, want %q\n%v", got, want, err)
	}
}

func TestEditheaderResult(t *testing.T) {
	res := execute(t, `require "editheader"; addheader "X-Sieve-Tag" "yes"; deleteheader "x-spam-score";`)
	if !res.HeadersEdited || res.Headers[0].Name != "X-Sieve-Tag" {
		t.Fatalf("headers = %+v", res.Headers)
	}
	for _, h := range res.Headers {
		if strings.EqualFold(h.Name, "x-spam-score") {
			t.Error("x-spam-score not deleted")
		}
	}
	if a := res.Actions[0]; !a.Implicit || len(a.Headers) != len(res.Headers) {
		t.Errorf("implicit keep must carry the edited header: %+v", a)
	}
}

func TestMultiscriptStopsAfterCancel(t *testing.T) {
	before := mustCompile(t, `require "fileinto"; fileinto "Before";`)
	user := mustCompile(t, `require "fileinto"; fileinto "User";`)
	res, err := RunMulti(context.Background(), &Env{Message: NewMessage([]byte(testMsg))}, []*Script{before}, user, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := actSummary(res); !reflect.DeepEqual(got, []string{"fileinto:Before"}) {
		t.Errorf("got %q", got)
	}
	keepBefore := mustCompile(t, `require "imap4flags"; addflag "\\Seen";`)
	res, _ = RunMulti(context.Background(), &Env{Message: NewMessage([]byte(testMsg))}, []*Script{keepBefore}, user, nil)
	if got := actSummary(res); !reflect.DeepEqual(got, []string{`fileinto:User{\Seen}`}) {
		t.Errorf("got %q", got)
	}
}

func TestConcurrentExecute(t *testing.T) {
	s := mustCompile(t, benchScript)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				if _, err := s.Execute(context.Background(), benchEnv()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestVacationReply(t *testing.T) {
	res := execute(t, `require "vacation"; vacation :days 3 :subject "Away" "I am away";`)
	var v *Action
	for i := range res.Actions {
		if res.Actions[i].Type == "vacation" {
			v = &res.Actions[i]
		}
	}
	if v == nil || v.Seconds != 3*86400 {
		t.Fatalf("vacation action = %+v", res.Actions)
	}
	env := &Env{Message: NewMessage([]byte(testMsg)), Envelope: Envelope{From: "alice@example.org", To: "bob+lists@example.net"}, Now: func() time.Time { return time.Unix(0, 0) }}
	out, ok, why := VacationReply(env, v)
	if !ok {
		t.Fatalf("no reply: %s", why)
	}
	m := NewMessage(out.Data)
	if out.To != "alice@example.org" || out.From != "" || subjectOf(m) != "Away" {
		t.Errorf("reply %+v subject %q", out, subjectOf(m))
	}
	env.Envelope.From = ""
	if _, ok, _ := VacationReply(env, v); ok {
		t.Error("replied to the null sender")
	}
}

func TestSyntaxErrors(t *testing.T) {
	deep := strings.Repeat("if true {\n", 40) + strings.Repeat("}\n", 40)
	tests := []struct {
		name string
		src  string
		want []string // "line:col: message prefix"; nil means it compiles
	}{
		{"largest number", `if size :under 18446744073709551615 { stop; }`, nil},
		{"number overflow", `if size :under 18446744073709551616 { stop; }`, []string{"1:16: number exceeds integer limits"}},
		{"quantifier overflow", `if size :over 34359738368G { stop; }`, []string{"1:15: number exceeds integer limits"}},
		{"identifier too long", "if this_is_a_rediculously_long_test_name { stop; }", []string{"1:4: encountered impossibly long identifier"}},
		{"garbage reported once", "frop $$$;\nkeep;", []string{"1:6: unexpected character(s) starting with '$'", "1:6: expected end of command ';'"}},
		{"missing semicolon", "keep\nstop;", []string{"1:1: missing semicolon ';' after keep command"}},
		{"no validation after a syntax error", "frobnicate;\nkeep", []string{"2:5: expected end of command ';'"}},
		{"unterminated string", `fileinto "abc`, []string{`1:10: end of file before end of quoted string`}},
		{"stray close brace", "keep;\n}", []string{"2:1: unexpected '}' found at (the presumed) end of file"}},
		{"block nesting limit", deep, []string{"32:9: cannot nest command blocks deeper than 32 levels"}},
		{"too many arguments", "keep" + strings.Repeat(` "x"`, 33) + ";", []string{"1:134: too many arguments for command 'keep'"}},
		{"string list recovery", `if header :is ["a", 3] "b" { stop; } keep`, []string{"1:21: expecting string after ',' in string list, but found number", "1:42: expected end of command ';' or the beginning of a compound block '{', but found end of file"}},
		{"typo: missing semicolon", "require \"fileinto\";\nfileinto \"a\"\nkeep;", []string{"2:1: missing semicolon ';' after fileinto command"}},
		{"typo: missing colon", `if address matches "from" "*x*" { stop; }`, []string{"1:4: the address test requires 2 positional arguments", "1:4: missing colon ':' before ':matches' tag in address test"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile("s", []byte(tc.src), nil)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a CompileError", err)
			}
			if len(ce.Errors) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(ce.Errors), len(tc.want), err)
			}
			for i, w := range tc.want {
				if got := strings.TrimPrefix(ce.Errors[i].Error(), "s:"); !strings.HasPrefix(got, w) {
					t.Errorf("error %d = %q, want prefix %q", i+1, got, w)
				}
			}
		})
	}
}

type fakeMetadata map[string]string // "mailbox\x00entry" ("" mailbox: server)

func (m fakeMetadata) MailboxMetadata(mailbox, entry string) (string, bool) {
	v, ok := m[mailbox+"\x00"+entry]
	return v, ok
}

func (m fakeMetadata) ServerMetadata(entry string) (string, bool) {
	v, ok := m["\x00"+entry]
	return v, ok
}

// TestServerMetadata covers servermetadata, whose blocks the Pigeonhole
// suite disables (its testsuite cannot set server metadata).
func TestServerMetadata(t *testing.T) {
	md := fakeMetadata{"\x00/private/vendor/spam-folder": "Junk", "\x00/shared/admin": "x", "INBOX\x00/private/comment": "hi"}
	tests := []struct {
		src  string
		want bool
	}{
		{`servermetadata :is "/private/vendor/spam-folder" "Junk"`, true},
		{`servermetadata :is "/private/vendor/spam-folder" "Spam"`, false},
		{`servermetadata :contains "/private/none" ""`, false},
		{`servermetadata :contains "frop" ""`, false}, // invalid entry name
		{`servermetadataexists ["/private/vendor/spam-folder", "/shared/admin"]`, true},
		{`servermetadataexists ["/private/vendor/spam-folder", "/private/none"]`, false},
		{`servermetadataexists "/shared//admin"`, false},
		{`metadata :is "INBOX" "/private/comment" "hi"`, true},
		{`metadataexists "Other" "/private/comment"`, false},
	}
	for _, tc := range tests {
		src := `require ["mboxmetadata", "servermetadata", "fileinto"]; if ` + tc.src + ` { fileinto "Yes"; }`
		res, err := mustCompile(t, src).Execute(context.Background(), &Env{Message: NewMessage([]byte(testMsg)), Metadata: md})
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		if got := res.Actions[0].Mailbox == "Yes"; got != tc.want {
			t.Errorf("%s = %v, want %v", tc.src, got, tc.want)
		}
	}
	// without a store nothing exists
	res, _ := mustCompile(t, `require ["servermetadata","fileinto"]; if servermetadataexists "/shared/admin" { fileinto "Yes"; }`).Execute(context.Background(), &Env{Message: NewMessage([]byte(testMsg))})
	if res.Actions[0].Mailbox == "Yes" {
		t.Error("entry exists without a MetadataStore")
	}
}
