package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoad runs the load generator, closed loop and paced, against a policy
// server that answers DUNNO to requests from one client and DEFER_IF_PERMIT to
// the others, and checks that every reply is counted.
func TestLoad(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				dunno := false
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "client_address=192.0.2.1\n" {
						dunno = true
					}
					if line != "\n" {
						continue
					}
					reply := "action=DEFER_IF_PERMIT Greylisted, try again later\n\n"
					if dunno {
						reply = "action=DUNNO\n\n"
					}
					dunno = false
					if _, err := c.Write([]byte(reply)); err != nil {
						return
					}
				}
			}()
		}
	}()

	var stream bytes.Buffer
	for i := range 60 {
		fmt.Fprintf(&stream, "request=smtpd_access_policy\nclient_address=192.0.2.%d\nrecipient=u%d@example.com\n\n", i%3+1, i)
	}
	path := filepath.Join(t.TempDir(), "stream.txt")
	if err := os.WriteFile(path, stream.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"closed loop", []string{"-conns", "4"}},
		{"paced", []string{"-conns", "2", "-rate", "2000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			args := append([]string{"-addr", ln.Addr().String(), "-stream", path}, tc.args...)
			if err := runLoad(args, &out); err != nil {
				t.Fatal(err)
			}
			var res loadResult
			if err := json.Unmarshal(out.Bytes(), &res); err != nil {
				t.Fatalf("%v in %s", err, out.String())
			}
			if res.Requests != 60 || res.Actions["DUNNO"] != 20 || res.Actions["DEFER_IF_PERMIT"] != 40 {
				t.Errorf("requests %d, actions %v; want 60, DUNNO 20, DEFER_IF_PERMIT 40", res.Requests, res.Actions)
			}
			if res.P50Ms <= 0 || res.P99Ms < res.P50Ms {
				t.Errorf("p50 %v ms, p99 %v ms", res.P50Ms, res.P99Ms)
			}
			if paced := strings.Contains(tc.name, "paced"); paced != (res.SentP99Ms > 0) {
				t.Errorf("sent p99 %v ms in a %s run", res.SentP99Ms, tc.name)
			}
		})
	}
}
