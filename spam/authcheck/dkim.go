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
	}
	return "DKIM_INVALID"
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
func crlfReader(r io.Reader) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 32<<10)
		var prev byte
		out := make([]byte, 0, 64<<10)
		for {
			n, err := r.Read(buf)
			out = out[:0]
			for _, b := range buf[:n] {
				if b == '\n' && prev != '\r' {
					out = append(out, '\r')
				}
				out = append(out, b)
				prev = b
			}
			if len(out) > 0 {
				if _, werr := pw.Write(out); werr != nil {
					return
				}
			}
			if err == io.EOF {
				pw.Close()
				return
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr
}
