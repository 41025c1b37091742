package authcheck

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/dovetail-mail/dovetail/internal/dnserr"
)

// Resolver is every lookup the checks make; a *net.Resolver satisfies it.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// timeoutResolver bounds each query and makes every failure that is not
// "no such name" temporary to the libraries, which classify errors with a
// type assertion to net.Error (dnserr: a resolver refusing queries is a
// temperror, not a permerror). It also asks for every name as written, fully
// qualified (see dnserr.FQDN).
type timeoutResolver struct {
	r Resolver
	d time.Duration
}

func (t timeoutResolver) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, t.d)
}

func (t timeoutResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	ctx, cancel := t.ctx(ctx)
	defer cancel()
	v, err := t.r.LookupTXT(ctx, dnserr.FQDN(name))
	return v, dnserr.Classify(name, err)
}

func (t timeoutResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	ctx, cancel := t.ctx(ctx)
	defer cancel()
	v, err := t.r.LookupMX(ctx, dnserr.FQDN(name))
	return v, dnserr.Classify(name, err)
}

func (t timeoutResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ctx, cancel := t.ctx(ctx)
	defer cancel()
	v, err := t.r.LookupIPAddr(ctx, dnserr.FQDN(host))
	return v, dnserr.Classify(host, err)
}

func (t timeoutResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ctx, cancel := t.ctx(ctx)
	defer cancel()
	v, err := t.r.LookupAddr(ctx, addr)
	return v, dnserr.Classify(addr, err)
}

func (t timeoutResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	ctx, cancel := t.ctx(ctx)
	defer cancel()
	v, err := t.r.LookupNetIP(ctx, network, dnserr.FQDN(host))
	return v, dnserr.Classify(host, err)
}

// isNotFound reports an authoritative "no such name/record".
func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
