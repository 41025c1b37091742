package ldap

import (
	"context"
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
	name    string
	uris    []string
	cur     atomic.Int32 // index of the URI that last worked: failover sticks
	bind    func(ctx context.Context, c *lconn, timeout time.Duration) error
	cfg     *Config
	sem     chan struct{}
	idle    chan *lconn
	closed  atomic.Bool
	dialErr func(uri string, err error) // logs dial failures
}

func newPool(name string, size int, cfg *Config, bind func(context.Context, *lconn, time.Duration) error, dialErr func(string, error)) *pool {
	return &pool{
		name: name, uris: cfg.URIs, bind: bind, cfg: cfg, dialErr: dialErr,
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

// dial connects to the first URI that answers, starting with the last good one.
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
			c, err = dialURI(ctx, scheme, h, dialTimeout)
		}
		if err == nil {
			if p.cfg.StartTLS && scheme == "ldap" {
				host, _, _ := net.SplitHostPort(hostPort(h, "389"))
				err = c.startTLS(ctx, host, reqTimeout)
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
			continue
		}
		p.cur.Store(int32(idx))
		return c, nil
	}
	return nil, fmt.Errorf("%w: no LDAP server reachable: %w", directory.ErrUnavailable, errors.Join(errs...))
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
