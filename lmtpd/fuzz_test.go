package lmtpd

import (
	"strings"
	"testing"
)

// FuzzHeaders: the header helpers run on attacker-controlled input before anything
// else; they must never panic and the queue ID must stay a safe token.
func FuzzHeaders(f *testing.F) {
	f.Add([]byte(testMsg))
	f.Add([]byte("X-Spam-Status: Yes, score=9 tests=A,B\nX-Spam-Score: x\n\n"))
	f.Add([]byte("Received: by h (Postfix) with ESMTP id ;\n"))
	f.Add([]byte("\n\nbody"))
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr := parseHeader(headerBlock(b))
		id := postfixQueueID(hdr)
		if id != "" && !validQueueID(id) {
			t.Fatalf("bad queue id %q", id)
		}
		parseSpam(hdr)
		s := headerSafe(string(b))
		if strings.ContainsAny(s, "\r\n\x00") {
			t.Fatal("headerSafe left a line break")
		}
	})
}
