package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Forward relays every connection accepted on ln to target until the test
// ends, and returns ln's address: a TLS listener in front of a plain server,
// or a link that misbehaves. upstream copies the client's bytes to the server
// (nil: all of them), so a test can cut that direction; when it returns, both
// ends are closed. Cleanup closes the listener and every relayed connection.
func Forward(t testing.TB, ln net.Listener, target string, upstream func(dst io.Writer, src io.Reader)) string {
	t.Helper()
	if upstream == nil {
		upstream = func(dst io.Writer, src io.Reader) { io.Copy(dst, src) }
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(cs ...net.Conn) {
		mu.Lock()
		conns = append(conns, cs...)
		mu.Unlock()
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			track(c, s)
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(c, s); c.Close() }()
			go func() { defer wg.Done(); upstream(s, c); s.Close(); c.Close() }()
		}
	}()
	return ln.Addr().String()
}
