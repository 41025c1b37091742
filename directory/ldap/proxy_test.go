package ldap

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// proxy is a TCP relay in front of slapd that the tests can count, freeze
// (stop relaying answers: a hung server) and shut (refuse and cut every
// connection: a dead server).
type proxy struct {
	ln       net.Listener
	target   string
	frozen   atomic.Bool
	open     atomic.Int32 // client connections currently open
	peak     atomic.Int32
	accepted atomic.Int32
	mu       sync.Mutex
	conns    []net.Conn
	wg       sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.shut)
	return p
}

func (p *proxy) uri() string { return "ldap://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.accepted.Add(1)
		n := p.open.Add(1)
		for {
			old := p.peak.Load()
			if n <= old || p.peak.CompareAndSwap(old, n) {
				break
			}
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		var once sync.Once
		done := func() {
			c.Close()
			s.Close()
			once.Do(func() { p.open.Add(-1) })
		}
		go func() { defer p.wg.Done(); defer done(); io.Copy(s, c) }()
		go func() {
			defer p.wg.Done()
			defer done()
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && !p.frozen.Load() {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// shut closes the listener and every relayed connection.
func (p *proxy) shut() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
