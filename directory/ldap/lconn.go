package ldap

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// lconn is a synchronous LDAP connection: one request at a time, written and
// answered on the caller's goroutine, with socket deadlines as timeouts and as
// the way a cancelled context interrupts a request.
//
// Why not go-ldap's Conn: it multiplexes requests through three goroutines and
// about six channel hand-offs plus a timer goroutine per request, which is
// right for a shared connection but dominates the latency of an auth lookup.
// Our pool hands each connection to one request at a time, so the simplest
// protocol loop is also the fastest. go-ldap still compiles filters, escapes
// values and defines the error codes (goldap.Error), so callers classify errors
// with goldap.IsErrorWithCode exactly as before.
type lconn struct {
	nc     net.Conn
	r      *bufio.Reader
	msgID  int64
	broken bool
	uri    int // index of the pool URI it is connected to
	// noCert: in the TLS handshake the server asked for a client certificate,
	// there was none to send, and nothing has been read since. A server that
	// demands one may then just hang up after the handshake (slapd with
	// GnuTLS does), which alone would read as a plain EOF.
	noCert bool
}

// errNoClientCert marks a failure that followed a request for a client
// certificate dovetail did not have (see certProblem).
var errNoClientCert = errors.New("the server asked for a TLS client certificate and none is configured")

// maxResponse bounds one LDAP message we accept (an entry with a few
// attributes is far smaller).
const maxResponse = 1 << 20

func netErr(err error) error { return goldap.NewError(goldap.ErrorNetwork, err) }

// splitURI returns the scheme and the host part of an LDAP URI. ldapi:// URIs
// carry a URL-encoded socket path as their host ("ldapi://%2Frun%2Fldapi"),
// which net/url rejects, so they are split by hand.
func splitURI(uri string) (scheme, host string, err error) {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an LDAP URI", uri)
	}
	scheme = strings.ToLower(scheme)
	host, _, _ = strings.Cut(rest, "/")
	switch scheme {
	case "ldapi":
		if host == "" {
			host = "/var/run/slapd/ldapi"
		} else if host, err = url.PathUnescape(host); err != nil {
			return "", "", fmt.Errorf("%q: %v", uri, err)
		}
	case "ldap", "ldaps":
		if host == "" {
			host = "localhost"
		}
		if _, err := url.Parse(scheme + "://" + host); err != nil {
			return "", "", fmt.Errorf("%q: %v", uri, err)
		}
	default:
		return "", "", fmt.Errorf("%q: scheme must be ldap, ldaps or ldapi", uri)
	}
	return scheme, host, nil
}

// dialURI connects to ldap://host[:port], ldaps://host[:port] or
// ldapi://<url-encoded socket path>; scheme and host come from splitURI, and
// base is the TLS configuration of ldaps:// (see tlsFor).
func dialURI(ctx context.Context, scheme, host string, base *tls.Config, timeout time.Duration) (*lconn, error) {
	var err error
	var noCert bool
	d := &net.Dialer{Timeout: timeout}
	var nc net.Conn
	switch scheme {
	case "ldap":
		nc, err = d.DialContext(ctx, "tcp", hostPort(host, "389"))
	case "ldaps":
		name, _, _ := net.SplitHostPort(hostPort(host, "636"))
		td := &tls.Dialer{NetDialer: d, Config: tlsFor(base, name, &noCert)}
		nc, err = td.DialContext(ctx, "tcp", hostPort(host, "636"))
	case "ldapi":
		nc, err = d.DialContext(ctx, "unix", host)
	}
	if err != nil {
		return nil, netErr(noCertErr(noCert, err))
	}
	return &lconn{nc: nc, r: bufio.NewReaderSize(nc, 8192), noCert: noCert}, nil
}

// tlsFor returns base (nil: the defaults) for a connection to host: the
// certificate is checked against host unless tls.server_name overrides it.
// Without a client certificate, *noCert records whether the server asked for one.
func tlsFor(base *tls.Config, host string, noCert *bool) *tls.Config {
	if base == nil {
		base = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c := base.Clone()
	if c.ServerName == "" {
		c.ServerName = host
	}
	if len(c.Certificates) == 0 {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			*noCert = true
			return &tls.Certificate{}, nil // none: the server decides whether that is enough
		}
	}
	return c
}

// noCertErr marks err with errNoClientCert when the server had asked for a
// client certificate.
func noCertErr(noCert bool, err error) error {
	if noCert {
		return fmt.Errorf("%w: %w", errNoClientCert, err)
	}
	return err
}

func hostPort(h, port string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), port)
}

func (c *lconn) close() {
	c.broken = true
	c.nc.Close()
}

// roundTrip sends one request and calls handle for every response message of
// that id until handle reports done. It returns when ctx is done, too: the
// request is then abandoned and the connection closed, since its answer may
// still arrive and would be taken for the next request's.
func (c *lconn) roundTrip(ctx context.Context, op *ber.Packet, timeout time.Duration, handle func(*ber.Packet) (bool, error)) (err error) {
	if c.broken {
		return netErr(errors.New("connection is closed"))
	}
	if err := ctx.Err(); err != nil {
		return netErr(fmt.Errorf("ldap: request not sent: %w", err))
	}
	c.msgID++
	env := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	env.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, c.msgID, "MessageID"))
	env.AppendChild(op)
	c.nc.SetDeadline(time.Now().Add(timeout))
	// Registered after the deadline above, so a cancellation cannot be overwritten
	// by it; a deadline in the past wakes the blocked Write or Read at once.
	nc := c.nc
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer func() {
		if !stop() {
			// The deadline was (or is being) cut: whatever happened, this
			// connection must not serve another request.
			c.close()
			if err == nil {
				return
			}
		}
		if cerr := ctx.Err(); err != nil && cerr != nil && isNetErr(err) {
			err = netErr(fmt.Errorf("ldap: request abandoned: %w", cerr))
		}
	}()
	if _, err := c.nc.Write(env.Bytes()); err != nil {
		c.close()
		return netErr(noCertErr(c.noCert, err))
	}
	for {
		p, err := ber.ReadPacket(io.LimitReader(c.r, maxResponse))
		if err != nil {
			c.close()
			if isTimeout(err) && ctx.Err() == nil {
				return netErr(fmt.Errorf("ldap: request timed out after %s: %w", timeout, err))
			}
			return netErr(noCertErr(c.noCert, err))
		}
		c.noCert = false
		if len(p.Children) < 2 {
			c.close()
			return netErr(errors.New("ldap: malformed response"))
		}
		id, ok := p.Children[0].Value.(int64)
		if !ok || id != c.msgID {
			// id 0 is an unsolicited notification (e.g. notice of disconnection).
			c.close()
			return netErr(fmt.Errorf("ldap: unexpected message id %v", p.Children[0].Value))
		}
		done, err := handle(p.Children[1])
		if done || err != nil {
			return err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// result turns an LDAPResult into nil or a *goldap.Error.
func result(op *ber.Packet) error {
	if len(op.Children) < 3 {
		return netErr(errors.New("ldap: malformed result"))
	}
	code, ok := op.Children[0].Value.(int64)
	if !ok {
		return netErr(errors.New("ldap: malformed result code"))
	}
	if code == 0 {
		return nil
	}
	return goldap.NewError(uint16(code), errors.New(op.Children[2].Data.String()))
}

// bind performs a simple bind. An empty password is refused here: it would
// be an unauthenticated bind, which servers accept (RFC 4513 §5.1.2).
func (c *lconn) bind(ctx context.Context, dn, pw string, timeout time.Duration) error {
	if pw == "" {
		return goldap.NewError(goldap.ErrorEmptyPassword, errors.New("ldap: empty password not allowed"))
	}
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 0, nil, "Bind Request")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, "Version"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "User Name"))
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, pw, "Password"))
	return c.roundTrip(ctx, op, timeout, func(r *ber.Packet) (bool, error) {
		if r.Tag != 1 {
			c.close()
			return true, netErr(fmt.Errorf("ldap: unexpected response %d to bind", r.Tag))
		}
		return true, result(r)
	})
}

// startTLS upgrades the connection (RFC 4511 §4.14); base as for dialURI.
func (c *lconn) startTLS(ctx context.Context, host string, base *tls.Config, timeout time.Duration) error {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 23, nil, "Start TLS")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "1.3.6.1.4.1.1466.20037", "TLS Extended Command"))
	err := c.roundTrip(ctx, op, timeout, func(r *ber.Packet) (bool, error) {
		if r.Tag != 24 {
			c.close()
			return true, netErr(fmt.Errorf("ldap: unexpected response %d to StartTLS", r.Tag))
		}
		return true, result(r)
	})
	if err != nil {
		return err
	}
	var noCert bool
	tc := tls.Client(c.nc, tlsFor(base, host, &noCert))
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		c.close()
		return netErr(noCertErr(noCert, err))
	}
	c.nc, c.r = tc, bufio.NewReaderSize(tc, 8192)
	c.noCert = noCert
	return nil
}

// search runs one search and returns its entries (at most sizeLimit; more is
// goldap.LDAPResultSizeLimitExceeded).
func (c *lconn) search(ctx context.Context, base string, scope int, filter *ber.Packet, attrs []string, sizeLimit int, timeout time.Duration) ([]*goldap.Entry, error) {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 3, nil, "Search Request")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, base, "Base DN"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(scope), "Scope"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(goldap.NeverDerefAliases), "Deref Aliases"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(sizeLimit), "Size Limit"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64((timeout+time.Second-1)/time.Second), "Time Limit"))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, "Types Only"))
	op.AppendChild(filter)
	as := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	for _, a := range attrs {
		as.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a, "Attribute"))
	}
	op.AppendChild(as)
	var entries []*goldap.Entry
	err := c.roundTrip(ctx, op, timeout, func(r *ber.Packet) (bool, error) {
		switch r.Tag {
		case 4: // SearchResultEntry
			if len(r.Children) < 2 {
				c.close()
				return true, netErr(errors.New("ldap: malformed entry"))
			}
			e := &goldap.Entry{DN: r.Children[0].Data.String()}
			for _, a := range r.Children[1].Children {
				if len(a.Children) < 2 {
					continue
				}
				ea := &goldap.EntryAttribute{Name: a.Children[0].Data.String()}
				for _, v := range a.Children[1].Children {
					ea.Values = append(ea.Values, v.Data.String())
				}
				e.Attributes = append(e.Attributes, ea)
			}
			entries = append(entries, e)
			return false, nil
		case 19: // SearchResultReference: referrals are not followed
			return false, nil
		case 5: // SearchResultDone
			return true, result(r)
		}
		c.close()
		return true, netErr(fmt.Errorf("ldap: unexpected response %d to search", r.Tag))
	})
	return entries, err
}
