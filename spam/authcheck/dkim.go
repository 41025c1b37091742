package authcheck

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/dovetail-mail/dovetail/spam"
)

// DKIMResult is one signature's outcome.
type DKIMResult struct {
	Domain string
	Err    error // nil: valid
}

// Symbol names the outcome.
func (d DKIMResult) Symbol() string {
	switch {
	case d.Err == nil:
		return "DKIM_VALID"
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
	opts := &dkim.VerifyOptions{
		MaxVerifications: c.cfg.MaxSignatures,
		LookupTXT: func(name string) ([]string, error) {
			return c.res.LookupTXT(ctx, name)
		},
	}
	verifs, err := dkim.VerifyWithOptions(crlfReader(rc), opts)
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// The message itself could not be read as a signed message.
		return []DKIMResult{{Err: err}}
	}
	out := make([]DKIMResult, 0, len(verifs))
	for _, v := range verifs {
		out = append(out, DKIMResult{Domain: strings.ToLower(v.Domain), Err: v.Err})
	}
	return out
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
