package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/dovetail-mail/dovetail/directory"
)

// pool is a bounded set of LDAP connections, each used by one request at a time.
// A semaphore bounds the total (idle + in use); idle connections wait in a
// channel. Connections are dialled lazily, so a pool needs no LDAP server to be
// created and recovers by itself when the server returns.
type pool struct {
	name string
	uris []string
	// cur is the index of the URI to try first: the last that worked
	// (failover sticks) or the one after the last that failed. The search
	// and auth-bind pools share it: they talk to the same servers, and the
	// auth binds must not keep going to a server the searches left.
	cur     *atomic.Int32
	bind    func(ctx context.Context, c *lconn, timeout time.Duration) error
	cfg     *Config
	tls     *tls.Config // for ldaps:// and StartTLS; nil: Go's defaults
	sem     chan struct{}
	idle    chan *lconn
	closed  atomic.Bool
	dialErr func(uri string, err error) // logs dial failures
}

func newPool(name string, size int, cfg *Config, tlsCfg *tls.Config, cur *atomic.Int32, bind func(context.Context, *lconn, time.Duration) error, dialErr func(string, error)) *pool {
	return &pool{
		name: name, uris: cfg.URIs, cur: cur, bind: bind, cfg: cfg, tls: tlsCfg, dialErr: dialErr,
		sem:  make(chan struct{}, size),
		idle: make(chan *lconn, size),
	}
}

var errClosed = errors.New("ldap: directory closed")

// get returns a connection for exclusive use (reused tells whether it came from
// the idle set, i.e. may have gone stale); put must be called with it.
func (p *pool) get(ctx context.Context) (c *lconn, reused bool, err error) {
	if p.closed.Load() {
		return nil, false, fmt.Errorf("%w: %w", directory.ErrUnavailable, errClosed)
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, false, fmt.Errorf("%w: waiting for a %s connection: %w", directory.ErrUnavailable, p.name, ctx.Err())
	}
	for {
		select {
		case c := <-p.idle:
			if c.broken {
				continue
			}
			return c, true, nil
		default:
		}
		break
	}
	c, err = p.dial(ctx)
	if err != nil {
		<-p.sem
		return nil, false, err
	}
	return c, false, nil
}

// put returns c to the pool; a broken connection is closed instead. After a
// network error every idle connection is suspect too (the server restarted), so
// they are all dropped: the next get dials afresh.
func (p *pool) put(c *lconn, broken bool) {
	defer func() { <-p.sem }()
	if broken || c.broken || p.closed.Load() {
		c.close()
		if broken {
			p.drain()
		}
		return
	}
	select {
	case p.idle <- c:
	default:
		c.close()
	}
}

func (p *pool) drain() {
	for {
		select {
		case c := <-p.idle:
			c.close()
		default:
			return
		}
	}
}

// dial connects to the first URI that answers, starting with the last good one
// (or the one after the last that failed).
func (p *pool) dial(ctx context.Context) (*lconn, error) {
	start := int(p.cur.Load())
	var errs []error
	for i := range p.uris {
		idx := (start + i) % len(p.uris)
		uri := p.uris[idx]
		// Connecting is bounded by dial_timeout, StartTLS and the service bind by
		// timeout, all of them by the caller's deadline.
		dialTimeout, reqTimeout := p.cfg.DialTimeout.D(), p.cfg.Timeout.D()
		if dl, ok := ctx.Deadline(); ok {
			left := time.Until(dl)
			dialTimeout, reqTimeout = min(dialTimeout, left), min(reqTimeout, left)
		}
		if dialTimeout <= 0 {
			errs = append(errs, ctx.Err())
			break
		}
		// The scheme is compared as splitURI lower-cases it: "LDAP://" is ldap
		// too, and must not skip StartTLS and send the binds in clear text.
		scheme, h, err := splitURI(uri)
		var c *lconn
		if err != nil {
			err = netErr(err)
		} else {
			c, err = dialURI(ctx, scheme, h, p.tls, dialTimeout)
		}
		if err == nil {
			if p.cfg.StartTLS && scheme == "ldap" {
				host, _, _ := net.SplitHostPort(hostPort(h, "389"))
				err = c.startTLS(ctx, host, p.tls, reqTimeout)
			}
			if err == nil && p.bind != nil {
				err = p.bind(ctx, c, reqTimeout)
			}
			if err != nil {
				c.close()
			}
		}
		if err != nil {
			p.dialErr(uri, err)
			errs = append(errs, fmt.Errorf("%s: %w", uri, err))
			p.skip(idx)
			continue
		}
		p.cur.Store(int32(idx))
		c.uri = idx
		return c, nil
	}
	return nil, fmt.Errorf("%w: no LDAP server reachable: %w", directory.ErrUnavailable, errors.Join(errs...))
}

// skip makes the next dial start after URI idx (unless another request has
// moved on already), because it failed or did not answer. A hung server costs
// a whole timeout per attempt, so one request's deadline may run out before it
// reaches a working URI (with the defaults already behind one hung primary);
// starting every request at the hung one again would never get there.
func (p *pool) skip(idx int) {
	p.cur.CompareAndSwap(int32(idx), int32((idx+1)%len(p.uris)))
}

// failed reports that the server of c did not answer a request: not when the
// caller cancelled it, but when it broke or timed out, also against the
// caller's deadline.
func (p *pool) failed(ctx context.Context, c *lconn, err error) {
	if isNetErr(err) && !errors.Is(ctx.Err(), context.Canceled) {
		p.skip(c.uri)
	}
	// In TLS 1.3 the server judges the client certificate after the client
	// has finished its handshake: its refusal arrives with the first answer,
	// which for the auth-bind pool is a request, not part of the dial.
	if certProblem(err) != "" {
		p.dialErr(p.uris[c.uri], err)
	}
}

func (p *pool) close() {
	p.closed.Store(true)
	p.drain()
}

// isNetErr reports errors after which the connection must not be reused.
func isNetErr(err error) bool {
	if err == nil {
		return false
	}
	return goldap.IsErrorAnyOf(err, goldap.ErrorNetwork, goldap.LDAPResultServerDown, goldap.LDAPResultUnavailable,
		goldap.LDAPResultBusy, goldap.LDAPResultTimeout, goldap.LDAPResultTimeLimitExceeded, goldap.ErrorUnexpectedResponse) ||
		errors.Is(err, net.ErrClosed)
}
