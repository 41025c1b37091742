package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestNull: the do-nothing server answers every request DUNNO, however the
// requests are cut into reads (two in one write, one across two writes),
// sleeping in read(2), spinning or on the netpoller.
func TestNull(t *testing.T) {
	for _, spin := range []nullMode{nullBlock, nullSpin, nullNetpoll} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- serveNull(ctx, ln, spin) }()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for _, w := range []string{"request=smtpd_access_policy\n\nrequest=smtpd_access_policy\n\nrequest=smtpd", "_access_policy\n", "\n"} {
			if _, err := io.WriteString(c, w); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 3 {
			var got string
			for range 2 {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("mode=%v: reply %d: %v", spin, i, err)
				}
				got += line
			}
			if got != "action=DUNNO\n\n" {
				t.Fatalf("mode=%v: reply %d = %q", spin, i, got)
			}
		}
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("mode=%v: serveNull: %v", spin, err)
		}
	}
}
