package authcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

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
	verifs, err := dkim.VerifyWithOptions(crlfReader(rc), opts)
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// The message itself could not be read as a signed message.
		return []DKIMResult{{Err: err}}
	}
	// Verifications come in the order of the DKIM-Signature fields.
	sigs := msg.Header.RawValues("DKIM-Signature")
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

// applyKeyFlags applies the t= flags of the key the signature sig was
// verified with (RFC 6376 §3.6.1). Unknown flags are ignored, as the RFC
// asks.
func applyKeyFlags(r DKIMResult, v *dkim.Verification, sig string, keys map[string][]string) DKIMResult {
	tags := tagList(sig)
	d := strings.ToLower(tags["d"])
	if d == "" || d != r.Domain {
		// Not the field go-msgauth verified (the header parsers disagree);
		// leave the result as it is rather than apply another key's flags.
		return r
	}
	txts := keys[strings.ToLower(tags["s"]+"._domainkey."+d)]
	if len(txts) != 1 {
		// No key, or several: go-msgauth failed the signature already.
		return r
	}
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
