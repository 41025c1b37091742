package sieve

import (
	"context"
	"testing"
	"time"
)

var fuzzSeedScripts = []string{
	``,
	`keep;`,
	`require ["fileinto","variables","imap4flags"]; if header :matches "subject" "*x*" { set "a" "${1}"; fileinto "${a}"; addflag "\\Seen"; }`,
	`require ["mime","foreverypart","extracttext","variables"]; foreverypart { extracttext "t"; if string :contains "${t}" "x" { break; } }`,
	`require "body"; if body :content "text" :contains "frop" { discard; }`,
	`require ["editheader","regex"]; addheader "X-A" "b"; deleteheader :regex "x-a" "^b";`,
	"if header :is \"a\" text:\r\nfoo\r\n.\r\n { stop; }",
	`require "encoded-character"; if header :is "s" "${hex:41 42}${unicode:263a}" { stop; }`,
	`if anyof (not exists "x", allof (true, false)) { redirect "a@b.c"; }`,
	`/* unterminated`,
	`if header :comparator "i;octet" :is`,
}

const fuzzSeedMessage = "From: a@example.org\r\nTo: b@example.net\r\nSubject: frop\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nfrop\r\n--x--\r\n"

// FuzzCompile: the lexer/parser/compiler never panic and always report
// positioned errors for bad input.
func FuzzCompile(f *testing.F) {
	for _, s := range fuzzSeedScripts {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		_, err := Compile("fuzz.sieve", src, &Options{Limits: Limits{MaxScriptSize: 1 << 16}})
		if ce, ok := err.(*CompileError); ok {
			if len(ce.Errors) == 0 {
				t.Fatal("CompileError without errors")
			}
			for _, e := range ce.Errors {
				if e.Line < 1 || e.Col < 1 {
					t.Fatalf("bad position: %v", e)
				}
			}
		}
	})
}

// FuzzExecute: compiling and running any script on any message never
// panics or hangs.
func FuzzExecute(f *testing.F) {
	for _, s := range fuzzSeedScripts {
		f.Add([]byte(s), []byte(fuzzSeedMessage))
	}
	f.Fuzz(func(t *testing.T, src, msg []byte) {
		s, err := Compile("fuzz.sieve", src, &Options{Limits: Limits{MaxScriptSize: 1 << 16, MaxCPUTime: time.Second}})
		if err != nil {
			return
		}
		res, _ := s.Execute(context.Background(), &Env{
			Message:  NewMessage(msg),
			Envelope: Envelope{From: "a@example.org", To: "b@example.net"},
		})
		if res == nil {
			t.Fatal("nil result")
		}
	})
}
