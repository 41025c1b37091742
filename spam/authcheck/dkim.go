package authcheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"sync"
	"unicode"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/dovetail-mail/dovetail/spam"
)

// DKIMResult is one signature's outcome.
type DKIMResult struct {
	Domain string
	Err    error // nil: valid
	// Testing: the key record has t=y (RFC 6376 §3.6.1), the signer is
	// trying DKIM out.
	Testing bool
}

// errKeySubdomain: the key record has t=s but the signature's i= names a
// subdomain of d=. RFC 6376 §3.6.1 makes that a MUST NOT; like the other
// key-record constraints of §6.1.2 (service, hash, key type) the signature
// is then unusable, a permanent failure (OpenDKIM: "unauthorized subdomain").
var errKeySubdomain = errors.New("dkim: key t=s forbids an i= subdomain of d=")

// Symbol names the outcome.
func (d DKIMResult) Symbol() string {
	switch {
	case d.Err == nil:
		// A pass under a t=y key is still a pass: OpenDKIM reports it as
		// plain dkim=pass and Mail::DKIM (SpamAssassin) as pass too; the RFC
		// asks only that testing not make mail worse off than unsigned.
		return "DKIM_VALID"
	case d.Testing && !dkim.IsTempFail(d.Err):
		// RFC 6376 §3.6.1: verifiers MUST NOT treat messages from signers
		// in testing mode differently from unsigned email, so a broken
		// signature under a t=y key is no failure (zdkimfilter and the
		// Courier filters report it as dkim=neutral).
		return "DKIM_TESTING"
	case errors.Is(d.Err, errKeySubdomain):
		return "DKIM_PERMERROR"
	case dkim.IsTempFail(d.Err):
		return "DKIM_TEMPERROR"
	case dkim.IsPermFail(d.Err):
		return "DKIM_PERMERROR"
	case isBodyLength(d.Err):
		return "DKIM_BODY_LENGTH"
	}
	return "DKIM_INVALID"
}

// isBodyLength reports go-msgauth's refusal of any signature with an l= tag.
// Such a signature is not a forgery: Mail::DKIM and rspamd verify the signed
// prefix. go-msgauth cannot, so the signature is neither a pass nor a failure
// (DMARC then rests on SPF). The library only exposes the message text.
func isBodyLength(err error) bool {
	return err != nil && strings.Contains(err.Error(), "insecure body length tag")
}

func (c *Checker) checkDKIM(ctx context.Context, msg *spam.Message) []DKIMResult {
	if !msg.Header.Has("DKIM-Signature") {
		return nil
	}
	rc, err := msg.Open()
	if err != nil {
		return []DKIMResult{{Err: err}}
	}
	defer rc.Close()
	// go-msgauth parses the key record's t= flags but does not return them:
	// keep the records it fetches (signatures verify concurrently) and read
	// the flags here.
	var mu sync.Mutex
	keys := map[string][]string{}
	opts := &dkim.VerifyOptions{
		MaxVerifications: c.cfg.MaxSignatures,
		LookupTXT: func(name string) ([]string, error) {
			txts, err := c.res.LookupTXT(ctx, name)
			if err == nil {
				mu.Lock()
				keys[strings.ToLower(name)] = txts
				mu.Unlock()
			}
			return txts, err
		},
	}
	// Nor does it return the selector a verification used: read the
	// DKIM-Signature fields from the very bytes it verifies, as it reads
	// them, so verification i is the i-th field here. msg.Header cannot
	// stand in: its lenient parser drops lines go-msgauth counts as
	// signatures (a colon-less "DKIM-Signature"), and one such line would
	// give every signature after it its neighbour's key flags.
	var head bytes.Buffer
	src := crlfReader(rc)
	sigs := signatureFields(io.TeeReader(src, &head))
	verifs, err := dkim.VerifyWithOptions(io.MultiReader(&head, src), opts)
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// The message itself could not be read as a signed message.
		return []DKIMResult{{Err: err}}
	}
	out := make([]DKIMResult, 0, len(verifs))
	for i, v := range verifs {
		r := DKIMResult{Domain: strings.ToLower(v.Domain), Err: v.Err}
		if i < len(sigs) {
			r = applyKeyFlags(r, v, sigs[i], keys)
		}
		out = append(out, r)
	}
	return out
}

// signatureFields returns the DKIM-Signature field values of the header
// read from r, found exactly as go-msgauth's VerifyWithOptions finds them
// (textproto lines, SP/HTAB continuations, name trimmed and compared without
// case, no colon needed), so that they pair with its verifications by index.
// A header go-msgauth cannot read yields what was read: it fails the message.
func signatureFields(r io.Reader) []string {
	tr := textproto.NewReader(bufio.NewReader(r))
	var fields []string
	for {
		l, err := tr.ReadLine()
		if err != nil || l == "" {
			break
		}
		if len(fields) > 0 && (l[0] == ' ' || l[0] == '\t') {
			fields[len(fields)-1] += l + "\r\n"
		} else {
			fields = append(fields, l+"\r\n")
		}
	}
	var sigs []string
	for _, f := range fields {
		k, v, _ := strings.Cut(f, ":")
		if strings.EqualFold(strings.TrimSpace(k), "DKIM-Signature") {
			sigs = append(sigs, strings.TrimSpace(v))
		}
	}
	return sigs
}

// applyKeyFlags applies the t= flags of the key the signature sig was
// verified with (RFC 6376 §3.6.1): the record fetched for its s= and d=.
// Unknown flags are ignored, as the RFC asks.
func applyKeyFlags(r DKIMResult, v *dkim.Verification, sig string, keys map[string][]string) DKIMResult {
	tags := tagList(sig)
	// go-msgauth strips all Unicode white space from d= and s= before the
	// lookup; do the same so the name is the one it asked for.
	d, s := stripSpace(tags["d"]), stripSpace(tags["s"])
	if d == "" || d != v.Domain {
		// Not the field go-msgauth verified; leave the result as it is
		// rather than apply another key's flags.
		return r
	}
	txts := keys[strings.ToLower(s+"._domainkey."+d)]
	if len(txts) != 1 {
		// No key, or several: go-msgauth failed the signature already.
		return r
	}
	d = strings.ToLower(d)
	for _, f := range strings.Split(tagList(txts[0])["t"], ":") {
		switch stripWSP(f) {
		case "y":
			r.Testing = true
		case "s":
			auid := strings.ToLower(v.Identifier)
			if r.Err == nil && auid[strings.LastIndexByte(auid, '@')+1:] != d {
				r.Err = fmt.Errorf("%w (i=%s, d=%s)", errKeySubdomain, v.Identifier, d)
			}
		}
	}
	return r
}

// tagList reads a DKIM tag=value list (RFC 6376 §3.2), white space removed
// from the values. A malformed list yields what could be read: go-msgauth
// has judged the same text already.
func tagList(s string) map[string]string {
	m := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := m[k]; !dup {
			m[k] = stripWSP(v)
		}
	}
	return m
}

// stripSpace removes all Unicode white space, as go-msgauth does to tags.
func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

func stripWSP(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

// crlfReader makes bare-LF line ends CRLF, which DKIM canonicalization
// expects (the milter and SMTP deliver CRLF; files on disk often have LF).
// It converts while the verifier reads, without a goroutine: go-msgauth stops
// reading early (malformed or l= signatures, missing keys), and a producer
// feeding a pipe would then block forever with its buffer.
func crlfReader(r io.Reader) io.Reader {
	return &crlfConv{r: r, buf: make([]byte, 32<<10)}
}

type crlfConv struct {
	r    io.Reader
	buf  []byte
	data []byte // read from r, not yet returned
	err  error  // from r, returned once data is drained
	prev byte   // last byte returned
}

func (c *crlfConv) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(c.data) == 0 {
			// Return what we have rather than block on the next read.
			if c.err != nil || n > 0 {
				break
			}
			m, err := c.r.Read(c.buf)
			c.data, c.err = c.buf[:m], err
			continue
		}
		b := c.data[0]
		if b == '\n' && c.prev != '\r' {
			// The inserted CR counts as prev, so the LF follows next time round.
			b = '\r'
		} else {
			c.data = c.data[1:]
		}
		p[n] = b
		c.prev = b
		n++
	}
	if n == 0 && c.err != nil {
		return 0, c.err
	}
	return n, nil
}
