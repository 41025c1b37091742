package policyd

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// postfix37 is a request exactly as Postfix 3.7.11 sends it at RCPT
// (guides/protocols.md §2.1, captured from a real Postfix).
const postfix37 = `request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
client_address=127.0.0.1
client_name=localhost
client_port=49634
reverse_client_name=localhost
server_address=127.0.0.1
server_port=2526
helo_name=client.example.net
sender=alice@example.org
recipient=carol@remote.example
recipient_count=0
queue_id=
instance=475a.6b03faf7.ef797.0
size=120
etrn_domain=
stress=
sasl_method=PLAIN
sasl_username=alice@example.org
sasl_sender=
ccert_subject=
ccert_issuer=
ccert_fingerprint=
ccert_pubkey_fingerprint=
encryption_protocol=
encryption_cipher=
encryption_keysize=0
policy_context=
compatibility_level=3.6
mail_version=3.7.11
tls_sni=mx.example.com
x_future_attribute=kept

`

func TestReadPostfixRequest(t *testing.T) {
	rd := NewReader(strings.NewReader(postfix37+postfix37), 0, 0)
	var r Request
	for i := 0; i < 2; i++ {
		if err := rd.Read(&r); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if r.ProtocolState != StateRcpt || r.ClientAddress != "127.0.0.1" || !r.ClientAddr.IsLoopback() ||
			r.ClientPort != 49634 || r.ServerPort != 2526 || r.Sender != "alice@example.org" ||
			r.Recipient != "carol@remote.example" || r.Size != 120 || r.SASLUsername != "alice@example.org" ||
			r.Instance != "475a.6b03faf7.ef797.0" || r.MailVersion != "3.7.11" || r.TLSSNI != "mx.example.com" ||
			!r.Authenticated() {
			t.Fatalf("request %d parsed wrong: %+v", i, r)
		}
		if len(r.Extra) != 1 || r.Get("x_future_attribute") != "kept" || r.Get("size") != "120" {
			t.Fatalf("extra attributes: %+v", r.Extra)
		}
	}
	if err := rd.Read(&r); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last request: %v, want io.EOF", err)
	}
}

func TestReadErrors(t *testing.T) {
	base := "request=smtpd_access_policy\nprotocol_state=RCPT\n"
	tests := []struct {
		name  string
		in    string
		fatal bool   // connection must close
		want  string // substring of the error; "" = no error
	}{
		{"ok", base + "\n", false, ""},
		{"crlf tolerated", "request=smtpd_access_policy\r\nsender=a@b\r\n\r\n", false, ""},
		{"no equals", base + "garbage line\n\n", false, "no '='"},
		{"empty name", base + "=value\n\n", false, "empty attribute name"},
		{"NUL byte", base + "sender=a\x00b@example.com\n\n", false, "NUL byte"},
		{"bad number", base + "client_port=12x\n\n", false, "client_port"},
		// Postfix's CLIENT_PORT_UNKNOWN / SERVER_PORT_UNKNOWN (e.g. XCLIENT PORT=[UNAVAILABLE]).
		{"unknown ports", base + "client_port=unknown\nserver_port=unknown\n\n", false, ""},
		{"negative number", base + "size=-1\n\n", false, "size"},
		{"missing request", "protocol_state=RCPT\n\n", false, "missing request"},
		{"other request", "request=junk\n\n", false, "unsupported request"},
		{"long line", base + "sender=" + strings.Repeat("a", 70<<10) + "\n\n", true, "longer than"},
		{"long line at EOF", base + "sender=" + strings.Repeat("a", 70<<10), true, "longer than"},
		{"too many attributes", base + strings.Repeat("x=y\n", 200) + "\n", true, "more than 100 attributes"},
		{"eof mid request", base, true, "closed in the middle"},
		{"eof mid line", base + "sender=abc", true, "closed in the middle"},
		{"stray empty line", "\n", true, "empty line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rd := NewReader(strings.NewReader(tc.in), 0, 0)
			var r Request
			err := rd.Read(&r)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T), want a *ProtocolError containing %q", err, err, tc.want)
			}
			if !strings.Contains(pe.Error(), tc.want) || pe.Fatal != tc.fatal {
				t.Fatalf("error %q fatal=%v, want %q fatal=%v", pe.Error(), pe.Fatal, tc.want, tc.fatal)
			}
		})
	}
}

// A malformed (non-fatal) request is consumed up to its blank line so the next
// request on the connection parses.
func TestReadResyncAfterNonFatal(t *testing.T) {
	in := "request=smtpd_access_policy\nbroken\nsender=x@y\n\n" + postfix37
	rd := NewReader(strings.NewReader(in), 0, 0)
	var r Request
	if err := rd.Read(&r); err == nil {
		t.Fatal("first request should fail")
	}
	if err := rd.Read(&r); err != nil || r.Recipient != "carol@remote.example" {
		t.Fatalf("second request: %v %+v", err, r)
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte(postfix37))
	f.Add([]byte("request=smtpd_access_policy\n\nrequest=smtpd_access_policy\nsize=1\n\n"))
	f.Add([]byte("a\x00=b\n\n"))
	f.Add([]byte("=\n==\n\n\n"))
	seeds, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "*.txt"))
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := NewReader(strings.NewReader(string(data)), 1024, 20)
		var r Request
		for i := 0; i < 1000; i++ {
			err := rd.Read(&r)
			if err == nil {
				if r.Request != "smtpd_access_policy" {
					t.Fatalf("accepted a request without request=smtpd_access_policy")
				}
				continue
			}
			var pe *ProtocolError
			if errors.Is(err, io.EOF) || (errors.As(err, &pe) && pe.Fatal) {
				return
			}
			if !errors.As(err, &pe) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
		}
	})
}

func BenchmarkRead(b *testing.B) {
	data := strings.Repeat(postfix37, 100)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var r Request
	for b.Loop() {
		rd := NewReader(strings.NewReader(data), 0, 0)
		for range 100 {
			if err := rd.Read(&r); err != nil {
				b.Fatal(err)
			}
		}
	}
}
