package lmtpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Sender injects a new message into the MTA (redirect, vacation). Implementations:
// SendmailSender (Postfix's sendmail binary) and SMTPSender; tests use a fake.
type Sender interface {
	// Send submits msg with envelope sender from ("" = null sender <>) to rcpts.
	Send(ctx context.Context, from string, rcpts []string, msg []byte) error
}

// partsSender is a Sender that takes a message in parts, to send them one after
// the other: a redirect is its own fields, maybe an edited header, and the body
// shared with the stored copies, and joining them would copy the whole message.
type partsSender interface {
	sendParts(ctx context.Context, from string, rcpts []string, parts [][]byte) error
}

// sendParts submits the message made of parts through s: in parts when s takes
// them (SendmailSender, SMTPSender), else joined into one slice for Send.
func sendParts(ctx context.Context, s Sender, from string, rcpts []string, parts [][]byte) error {
	if ps, ok := s.(partsSender); ok {
		return ps.sendParts(ctx, from, rcpts, parts)
	}
	return s.Send(ctx, from, rcpts, bytes.Join(parts, nil))
}

// NewSender builds the configured Sender.
func NewSender(c SubmitConfig, hostname string) (Sender, error) {
	switch c.Method {
	case "sendmail", "":
		return &SendmailSender{Path: c.Sendmail, Timeout: c.Timeout.D()}, nil
	case "smtp":
		return &SMTPSender{Addr: c.Address, Timeout: c.Timeout.D(), Hostname: hostname}, nil
	}
	return nil, fmt.Errorf("lmtpd: unknown submission method %q", c.Method)
}

// SendmailSender runs "sendmail -i -f FROM -- RCPT..." (Postfix's postdrop path).
type SendmailSender struct {
	Path    string
	Args    []string // extra args, e.g. -C /etc/postfix-test
	Timeout time.Duration
}

// Send implements Sender.
func (s *SendmailSender) Send(ctx context.Context, from string, rcpts []string, msg []byte) error {
	return s.sendParts(ctx, from, rcpts, [][]byte{msg})
}

// sendParts implements partsSender: sendmail reads the parts one after the other.
func (s *SendmailSender) sendParts(ctx context.Context, from string, rcpts []string, parts [][]byte) error {
	if len(rcpts) == 0 {
		return errors.New("sendmail: no recipients")
	}
	for _, r := range rcpts {
		if strings.HasPrefix(r, "-") || strings.ContainsAny(r, " \t\r\n") {
			return fmt.Errorf("sendmail: %w %q", errRefusedRecipient, r)
		}
	}
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	f := from
	if f == "" {
		f = "<>"
	}
	args := append(append([]string{}, s.Args...), "-i", "-f", f, "--")
	args = append(args, rcpts...)
	cmd := exec.CommandContext(ctx, s.Path, args...)
	stdin := net.Buffers(slices.Clone(parts)) // reading consumes it
	cmd.Stdin = &stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("sendmail %s: %w: %s", s.Path, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// SMTPSender submits over SMTP (e.g. to Postfix on 127.0.0.1:25 or a submission port).
type SMTPSender struct {
	Addr    string
	Timeout time.Duration
	// Hostname is the EHLO name (lmtpd.hostname); empty: the machine's.
	Hostname string
}

// Send implements Sender.
func (s *SMTPSender) Send(ctx context.Context, from string, rcpts []string, msg []byte) error {
	return s.sendParts(ctx, from, rcpts, [][]byte{msg})
}

// sendParts implements partsSender.
func (s *SMTPSender) sendParts(ctx context.Context, from string, rcpts []string, parts [][]byte) error {
	t := s.Timeout
	if t <= 0 {
		t = 30 * time.Second
	}
	d := net.Dialer{Timeout: t}
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("smtp submit %s: %w", s.Addr, err)
	}
	conn.SetDeadline(time.Now().Add(t))
	c := smtp.NewClient(conn)
	defer c.Close()
	// The name we greet with: "localhost" is what a greylisting or
	// reject_non_fqdn_helo_hostname smtpd refuses first.
	helo := s.Hostname
	if helo == "" {
		helo, _ = os.Hostname()
	}
	if helo == "" {
		helo = "localhost"
	}
	if err := c.Hello(helo); err != nil {
		return fmt.Errorf("smtp submit: %w", err)
	}
	if err := c.SendMail(from, rcpts, &crlfReader{parts: slices.Clone(parts)}); err != nil {
		return fmt.Errorf("smtp submit: %w", err)
	}
	return c.Quit()
}

// errRefusedRecipient: an address we will never hand to sendmail.
var errRefusedRecipient = errors.New("refusing recipient")

// permanentSendError reports whether a submission failed for good: the MTA
// refused with a 5xx, or sendmail said the data, the user or the host is bad
// (sysexits EX_DATAERR, EX_NOUSER, EX_NOHOST). Everything else — a timeout, a
// refused connection, EX_TEMPFAIL, an unknown exit status — may work on a retry.
func permanentSendError(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code >= 500
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitCode() {
		case 65, 67, 68:
			return true
		}
		return false
	}
	return errors.Is(err, errRefusedRecipient)
}

// crlfReader reads parts one after the other with every LF turned into CRLF,
// the wire form, without building a converted copy of the message. Reading
// consumes parts (the slice, not the bytes).
type crlfReader struct {
	parts [][]byte
	lf    bool // the LF of a CRLF whose CR has been read is still to come
}

func (c *crlfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if c.lf {
			p[n] = '\n'
			n++
			c.lf = false
			continue
		}
		if len(c.parts) == 0 {
			break
		}
		cur := c.parts[0]
		if len(cur) == 0 {
			c.parts = c.parts[1:]
			continue
		}
		line := cur
		if i := bytes.IndexByte(cur, '\n'); i >= 0 {
			line = cur[:i]
		}
		k := copy(p[n:], line)
		n += k
		c.parts[0] = cur[k:]
		if k == len(line) && k < len(cur) && n < len(p) {
			p[n] = '\r' // cur[k] is the LF
			n++
			c.parts[0] = cur[k+1:]
			c.lf = true
		}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}
