package ldap

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
)

// lconn is a synchronous LDAP connection: one request at a time, written and
// answered on the caller's goroutine, with socket deadlines as timeouts.
//
// Why not go-ldap's Conn: it multiplexes requests through three goroutines and
// about six channel hand-offs plus a timer goroutine per request, which is
// right for a shared connection but dominates the latency of an auth lookup.
// Our pool hands each connection to one request at a time, so the simplest
// protocol loop is also the fastest. Requests and responses are encoded and
// decoded directly (ber.go) into buffers the connection reuses: the generic
// asn1-ber packet trees cost more CPU than the rest of an uncached login.
// go-ldap still compiles filters, escapes values and defines the error codes
// (goldap.Error), so callers classify errors with goldap.IsErrorWithCode.
type lconn struct {
	nc     net.Conn
	r      *bufio.Reader
	msgID  int32
	broken bool
	wbuf   []byte // request being written
	op     []byte // protocol op being built
	rbuf   []byte // last response message read
}

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
// ldapi://<url-encoded socket path>.
func dialURI(ctx context.Context, uri string, timeout time.Duration) (*lconn, error) {
	scheme, host, err := splitURI(uri)
	if err != nil {
		return nil, netErr(err)
	}
	d := &net.Dialer{Timeout: timeout}
	var nc net.Conn
	switch scheme {
	case "ldap":
		nc, err = d.DialContext(ctx, "tcp", hostPort(host, "389"))
	case "ldaps":
		name, _, _ := net.SplitHostPort(hostPort(host, "636"))
		td := &tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12}}
		nc, err = td.DialContext(ctx, "tcp", hostPort(host, "636"))
	case "ldapi":
		nc, err = d.DialContext(ctx, "unix", host)
	}
	if err != nil {
		return nil, netErr(err)
	}
	return &lconn{nc: nc, r: bufio.NewReaderSize(nc, 8192)}, nil
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

// roundTrip sends the protocol op in c.op (built by the caller with tag opTag)
// and calls handle with the tag and contents of every response op of that
// message id until handle reports done. The contents alias c.rbuf: handle must
// copy what it keeps.
func (c *lconn) roundTrip(opTag byte, timeout time.Duration, handle func(tag byte, body []byte) (bool, error)) error {
	if c.broken {
		return netErr(errors.New("connection is closed"))
	}
	c.msgID++
	if c.msgID <= 0 {
		c.msgID = 1 // message ids are 1..2^31-1 (RFC 4511 §4.1.1.1)
	}
	var id [6]byte
	idb := appendInt(id[:0], tagInteger, int64(c.msgID))
	c.wbuf = appendHeader(c.wbuf[:0], tagSequence, len(idb)+headerLen(len(c.op))+len(c.op))
	c.wbuf = append(c.wbuf, idb...)
	c.wbuf = appendHeader(c.wbuf, opTag, len(c.op))
	c.wbuf = append(c.wbuf, c.op...)
	c.nc.SetDeadline(time.Now().Add(timeout))
	_, err := c.nc.Write(c.wbuf)
	clear(c.wbuf) // a bind request carries a password
	if err != nil {
		c.close()
		return netErr(err)
	}
	for {
		msg, err := readMessage(c.r, c.rbuf[:0])
		c.rbuf = msg
		if err != nil {
			c.close()
			if isTimeout(err) {
				return netErr(fmt.Errorf("ldap: request timed out after %s: %w", timeout, err))
			}
			return netErr(err)
		}
		rid, tag, body, err := parseMessage(msg)
		if err != nil {
			c.close()
			return netErr(err)
		}
		if rid != int64(c.msgID) {
			// id 0 is an unsolicited notification (e.g. notice of disconnection).
			c.close()
			return netErr(fmt.Errorf("ldap: unexpected message id %d", rid))
		}
		done, err := handle(tag, body)
		if done || err != nil {
			return err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// result turns the contents of an LDAPResult into nil or a *goldap.Error.
func result(body []byte) error {
	code, diag, err := parseResult(body)
	if err != nil {
		return netErr(err)
	}
	if code == 0 {
		return nil
	}
	return goldap.NewError(uint16(code), errors.New(diag))
}

// bind performs a simple bind. An empty password is refused here: it would
// be an unauthenticated bind, which servers accept (RFC 4513 §5.1.2).
func (c *lconn) bind(dn, pw string, timeout time.Duration) error {
	if pw == "" {
		return goldap.NewError(goldap.ErrorEmptyPassword, errors.New("ldap: empty password not allowed"))
	}
	c.op = appendInt(c.op[:0], tagInteger, 3)
	c.op = appendString(c.op, tagOctetString, dn)
	c.op = appendString(c.op, tagContext0, pw)
	defer clear(c.op)
	return c.roundTrip(tagBindRequest, timeout, func(tag byte, body []byte) (bool, error) {
		if tag != tagBindResponse {
			c.close()
			return true, netErr(fmt.Errorf("ldap: unexpected response %#x to bind", tag))
		}
		return true, result(body)
	})
}

// startTLS upgrades the connection (RFC 4511 §4.14).
func (c *lconn) startTLS(host string, timeout time.Duration) error {
	c.op = appendString(c.op[:0], tagContext0, "1.3.6.1.4.1.1466.20037")
	err := c.roundTrip(tagExtendedRequest, timeout, func(tag byte, body []byte) (bool, error) {
		if tag != tagExtendedResponse {
			c.close()
			return true, netErr(fmt.Errorf("ldap: unexpected response %#x to StartTLS", tag))
		}
		return true, result(body)
	})
	if err != nil {
		return err
	}
	tc := tls.Client(c.nc, &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12})
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		c.close()
		return netErr(err)
	}
	c.nc, c.r = tc, bufio.NewReaderSize(tc, 8192)
	return nil
}

// search runs one search with an encoded filter and returns its entries (at
// most sizeLimit; more is goldap.LDAPResultSizeLimitExceeded).
func (c *lconn) search(base string, scope int, filter []byte, attrs []string, sizeLimit int, timeout time.Duration) ([]*goldap.Entry, error) {
	c.op = appendString(c.op[:0], tagOctetString, base)
	c.op = appendInt(c.op, tagEnumerated, int64(scope))
	c.op = appendInt(c.op, tagEnumerated, goldap.NeverDerefAliases)
	c.op = appendInt(c.op, tagInteger, int64(sizeLimit))
	c.op = appendInt(c.op, tagInteger, int64((timeout+time.Second-1)/time.Second))
	c.op = append(c.op, tagBoolean, 1, 0) // typesOnly FALSE
	c.op = append(c.op, filter...)
	n := 0
	for _, a := range attrs {
		n += headerLen(len(a)) + len(a)
	}
	c.op = appendHeader(c.op, tagSequence, n)
	for _, a := range attrs {
		c.op = appendString(c.op, tagOctetString, a)
	}
	var entries []*goldap.Entry
	err := c.roundTrip(tagSearchRequest, timeout, func(tag byte, body []byte) (bool, error) {
		switch tag {
		case tagSearchResultEntry:
			e, err := parseEntry(body)
			if err != nil {
				c.close()
				return true, netErr(err)
			}
			entries = append(entries, e)
			return false, nil
		case tagSearchResultReference: // referrals are not followed
			return false, nil
		case tagSearchResultDone:
			return true, result(body)
		}
		c.close()
		return true, netErr(fmt.Errorf("ldap: unexpected response %#x to search", tag))
	})
	return entries, err
}
