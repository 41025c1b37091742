package rawconn

import (
	"bufio"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEcho: a line written on a Conn comes back through an echo server, over
// TCP and over a unix socket, and the end of the stream reads as io.EOF.
func TestEcho(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(t.TempDir(), "s")
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				line, _ := bufio.NewReader(c).ReadString('\n')
				c.Write([]byte(strings.ToUpper(line)))
				c.Close()
			}()
			c, err := Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("hello\n")); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "HELLO\n" {
				t.Fatalf("read %q, %v", got, err)
			}
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("read after the end: %v, want io.EOF", err)
			}
		})
	}
}

func TestDialErrors(t *testing.T) {
	for _, tc := range [][2]string{{"udp", "127.0.0.1:1"}, {"tcp", "localhost:25"}, {"unix", "/nonexistent/socket"}} {
		if _, err := Dial(tc[0], tc[1]); err == nil {
			t.Errorf("Dial(%q, %q) succeeded", tc[0], tc[1])
		}
	}
}

func TestSleepUntil(t *testing.T) {
	start := Mono()
	SleepUntil(start + int64(2*time.Millisecond))
	if d := time.Duration(Mono() - start); d < 2*time.Millisecond {
		t.Errorf("woke after %v, want >= 2ms", d)
	}
}
