package authd

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzParseLine covers the parsers for every client line.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=AGFsaWNlAHNlY3JldA==",
		"AUTH\t2\tLOGIN\tservice=smtp\tsecured\tno-penalty",
		"CONT\t2\tYWxpY2U=", "CANCEL\t3", "VERSION\t1\t2", "CPID\t123",
		"AUTH\t4294967295\tCRAM-MD5\tservice=\x01tx\tresp=", "AUTH\t-1\tX", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, args := splitLine(line)
		if cmd == "AUTH" {
			if a, err := parseAuth(args, 2); err == nil {
				if a.id == 0 || a.service == "" {
					t.Fatalf("accepted %q: %+v", line, a)
				}
				_, _ = decodeB64(a.resp)
			}
		}
		if len(args) > 0 {
			_, _ = parseID(args[0])
		}
		if u := unescape(escape(line)); u != line {
			t.Fatalf("escape roundtrip %q → %q", line, u)
		}
		if strings.ContainsAny(escape(line), "\t\n") {
			t.Fatalf("escape left a separator in %q", line)
		}
	})
}

// FuzzConnection feeds arbitrary bytes to a live connection: whatever comes,
// the server answers or closes, and never panics or hangs.
func FuzzConnection(f *testing.F) {
	f.Add("VERSION\t1\t0\nCPID\t1\nAUTH\t1\tPLAIN\tservice=smtp\tresp=AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlcHc=\n")
	f.Add("VERSION\t1\t2\nAUTH\t1\tLOGIN\tservice=smtp\nCONT\t1\tYQ==\nCONT\t1\tYg==\n")
	f.Add("VERSION\t1\t2\nAUTH\t1\tSCRAM-SHA-256\tservice=smtp\tresp=biwsbj1hLHI9eA==\nCANCEL\t1\n")
	f.Add("VERSION\t1\t2\nAUTH\t1\tCRAM-MD5\tservice=smtp\nCONT\t1\t!!\n")
	dir := newFakeDirTB(f)
	s, err := New(testConfig(), dir, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, input string) {
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			c := s.newConn(a)
			c.serve()
		}()
		go func() {
			r := bufio.NewReader(b)
			for {
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
			}
		}()
		b.SetWriteDeadline(time.Now().Add(2 * time.Second))
		b.Write([]byte(input))
		time.Sleep(time.Millisecond)
		b.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("connection goroutine did not end")
		}
	})
}
