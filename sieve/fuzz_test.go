package sieve

import (
	"context"
	"strings"
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
	`require ["body","mime","foreverypart","variables"]; if body :content "message/rfc822" :contains "x" { stop; } foreverypart { if header :mime :anychild :contenttype "content-type" "text/plain" { set "a" "${0}"; } }`,
	`require ["date","relational","index"]; if date :index 1 :value "ge" "received" "year" "2000" { stop; } if address :count "gt" "to" "1" { stop; }`,
}

const fuzzSeedRFC822 = "Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nbody\r\n"

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
		f.Add([]byte(s), []byte(fuzzSeedRFC822))
	}
	f.Fuzz(func(t *testing.T, src, msg []byte) {
		s, err := Compile("fuzz.sieve", src, &Options{Limits: Limits{MaxScriptSize: 1 << 16, MaxCPUTime: time.Second}})
		if err != nil {
			return
		}
		res, err := s.Execute(context.Background(), &Env{
			Message:  NewMessage(msg),
			Envelope: Envelope{From: "a@example.org", To: "b@example.net"},
		})
		if res == nil {
			t.Fatal("nil result")
		}
		// runScript turns a panic into a runtime error so delivery goes on;
		// the fuzzer must still see it.
		if err != nil && strings.Contains(err.Error(), "internal error") {
			t.Fatal(err)
		}
	})
}
