package testenv

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// IMAPMessage is one message as FETCHed by Messages.
type IMAPMessage struct {
	UID    uint32
	Flags  []string // e.g. \Seen, \Recent, $label
	Header string   // header section (up to and including the blank line)
	Raw    string   // the whole message (BODY.PEEK[])
}

// IMAPClient is a minimal IMAP4rev1 client for assertions (LOGIN, LIST, EXAMINE,
// UID FETCH, arbitrary commands). Not for production use.
type IMAPClient struct {
	c   net.Conn
	r   *bufio.Reader
	tag int
}

// IMAPResponse is one untagged response: Line is the text with every literal replaced
// by "{N}", Literals holds the literals in order.
type IMAPResponse struct {
	Line     string
	Literals []string
}

// DialIMAP connects to addr and logs in; t.Cleanup logs out.
func DialIMAP(t testing.TB, addr, user, pass string) *IMAPClient {
	t.Helper()
	c, err := IMAPLogin(addr, user, pass)
	if err != nil {
		t.Fatalf("testenv: imap %s: %v", addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// IMAPLogin connects to addr and logs in; the caller must Close the client. A failed
// login is an error (use it for negative tests).
func IMAPLogin(addr, user, pass string) (*IMAPClient, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &IMAPClient{c: conn, r: bufio.NewReader(conn)}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	greet, err := c.r.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if !strings.HasPrefix(greet, "* OK") {
		conn.Close()
		return nil, fmt.Errorf("greeting: %q", strings.TrimSpace(greet))
	}
	if _, err := c.Cmd("LOGIN " + IMAPQuote(user) + " " + IMAPQuote(pass)); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Close logs out and closes the connection.
func (c *IMAPClient) Close() {
	_, _ = c.Cmd("LOGOUT")
	c.c.Close()
}

// IMAPQuote returns s as an IMAP quoted string.
func IMAPQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Cmd sends one command (without tag) and returns the untagged responses; a NO/BAD
// completion is an error.
func (c *IMAPClient) Cmd(cmd string) ([]IMAPResponse, error) {
	c.tag++
	tag := "T" + strconv.Itoa(c.tag)
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, tag+" "+cmd+"\r\n"); err != nil {
		return nil, err
	}
	var out []IMAPResponse
	for {
		resp, err := c.readResponse()
		if err != nil {
			return out, fmt.Errorf("%s: %w", firstWord(cmd), err)
		}
		switch {
		case strings.HasPrefix(resp.Line, tag+" "):
			status := strings.TrimPrefix(resp.Line, tag+" ")
			if strings.HasPrefix(status, "OK") {
				return out, nil
			}
			return out, fmt.Errorf("%s: %s", firstWord(cmd), status)
		case strings.HasPrefix(resp.Line, "* "):
			out = append(out, resp)
		}
		// "+ " continuations are not used by these commands
	}
}

func firstWord(s string) string {
	if i := strings.IndexByte(s, ' '); i > 0 {
		return s[:i]
	}
	return s
}

var literalRE = regexp.MustCompile(`\{(\d+)\+?\}$`)

// readResponse reads one response line including its literals.
func (c *IMAPClient) readResponse() (IMAPResponse, error) {
	var r IMAPResponse
	var line strings.Builder
	for {
		s, err := c.r.ReadString('\n')
		if err != nil {
			return r, err
		}
		s = strings.TrimRight(s, "\r\n")
		m := literalRE.FindStringSubmatch(s)
		line.WriteString(s)
		if m == nil {
			r.Line = line.String()
			return r, nil
		}
		n, _ := strconv.Atoi(m[1])
		buf := make([]byte, n)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return r, err
		}
		r.Literals = append(r.Literals, string(buf))
	}
}

// List returns the mailbox names (LIST "" "*").
func (c *IMAPClient) List() ([]string, error) {
	rs, err := c.Cmd(`LIST "" "*"`)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range rs {
		if !strings.HasPrefix(r.Line, "* LIST ") {
			continue
		}
		rest := r.Line[len("* LIST "):]
		i := strings.Index(rest, ") ")
		if i < 0 {
			continue
		}
		rest = rest[i+2:]
		// delimiter: quoted char or NIL
		if strings.HasPrefix(rest, "NIL ") {
			rest = rest[4:]
		} else if j := strings.Index(rest[1:], `" `); strings.HasPrefix(rest, `"`) && j >= 0 {
			rest = rest[j+3:]
		}
		switch {
		case literalRE.MatchString(rest) && len(r.Literals) > 0:
			names = append(names, r.Literals[0])
		case strings.HasPrefix(rest, `"`):
			s, err := strconv.Unquote(rest)
			if err != nil {
				s = strings.Trim(rest, `"`)
			}
			names = append(names, s)
		default:
			names = append(names, rest)
		}
	}
	return names, nil
}

var (
	uidRE   = regexp.MustCompile(`\bUID (\d+)`)
	flagsRE = regexp.MustCompile(`\bFLAGS \(([^)]*)\)`)
)

// Messages EXAMINEs (read-only) mailbox and fetches every message.
func (c *IMAPClient) Messages(mailbox string) ([]IMAPMessage, error) {
	if _, err := c.Cmd("EXAMINE " + IMAPQuote(mailbox)); err != nil {
		return nil, err
	}
	rs, err := c.Cmd("UID FETCH 1:* (UID FLAGS BODY.PEEK[])")
	if err != nil {
		return nil, err
	}
	var msgs []IMAPMessage
	for _, r := range rs {
		if !strings.Contains(r.Line, " FETCH (") {
			continue
		}
		var m IMAPMessage
		if s := uidRE.FindStringSubmatch(r.Line); s != nil {
			u, _ := strconv.ParseUint(s[1], 10, 32)
			m.UID = uint32(u)
		}
		if s := flagsRE.FindStringSubmatch(r.Line); s != nil {
			m.Flags = strings.Fields(s[1])
		}
		if len(r.Literals) > 0 {
			m.Raw = r.Literals[0]
			m.Header = m.Raw
			if i := strings.Index(m.Raw, "\r\n\r\n"); i >= 0 {
				m.Header = m.Raw[:i+4]
			} else if i := strings.Index(m.Raw, "\n\n"); i >= 0 {
				m.Header = m.Raw[:i+2]
			}
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// List logs in as user and returns the mailbox names.
func (d *DovecotServer) List(t testing.TB, user, pass string) []string {
	t.Helper()
	c := DialIMAP(t, d.IMAPAddr, user, pass)
	names, err := c.List()
	if err != nil {
		t.Fatalf("testenv: imap LIST: %v", err)
	}
	return names
}

// Messages logs in as user and returns every message of mailbox (read-only: flags
// and \Recent are left alone).
func (d *DovecotServer) Messages(t testing.TB, user, pass, mailbox string) []IMAPMessage {
	t.Helper()
	c := DialIMAP(t, d.IMAPAddr, user, pass)
	msgs, err := c.Messages(mailbox)
	if err != nil {
		t.Fatalf("testenv: imap %s: %v", mailbox, err)
	}
	return msgs
}

// WaitMessages polls mailbox until it holds at least n messages; fails after timeout.
func (d *DovecotServer) WaitMessages(t testing.TB, user, pass, mailbox string, n int, timeout time.Duration) []IMAPMessage {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := IMAPLogin(d.IMAPAddr, user, pass)
		var msgs []IMAPMessage
		if err == nil {
			msgs, err = c.Messages(mailbox)
			c.Close()
		}
		if err == nil && len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %s/%s: want %d messages after %s, have %d (%v)", user, mailbox, n, timeout, len(msgs), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
