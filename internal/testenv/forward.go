package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Forward relays every connection accepted on ln to target until the test
// ends, and returns ln's address: a TLS listener in front of a plain server,
// a link that misbehaves, one that watches the traffic. relay moves the bytes
// of one connection both ways and returns when it is done (nil: a plain
// copy); both ends are closed then, and at cleanup with the listener.
func Forward(t testing.TB, ln net.Listener, target string, relay func(client, server net.Conn)) string {
	t.Helper()
	if relay == nil {
		relay = Relay(nil)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
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
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Go(func() {
				relay(c, s)
				c.Close()
				s.Close()
			})
		}
	})
	return ln.Addr().String()
}

// Relay copies server to client as it is, and client to server through
// upstream (nil: as it is), until either side is done.
func Relay(upstream func(dst io.Writer, src io.Reader)) func(client, server net.Conn) {
	if upstream == nil {
		upstream = func(dst io.Writer, src io.Reader) { io.Copy(dst, src) }
	}
	return func(c, s net.Conn) {
		done := make(chan struct{})
		go func() {
			io.Copy(c, s)
			c.Close() // ends upstream's read of c
			close(done)
		}()
		upstream(s, c)
		s.Close() // ends the copy above
		<-done
	}
}
