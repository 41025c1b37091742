// Package miltertest drives a milter the way Postfix's smtpd does, for the
// milter package's Go benchmark and the side-by-side load generator
// (bench/milter): corpus messages split into header and CRLF body, a session
// through CONNECT and HELO, and one message transaction per call.
package miltertest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/emersion/go-message/textproto"
	gomilter "github.com/emersion/go-milter"
)

// Message is a corpus message split the way an MTA sends it to a milter.
type Message struct {
	Header textproto.Header
	Body   []byte // CRLF line ends, as Postfix sends them
}

// LoadCorpus reads up to n messages from dir/ham and dir/spam, interleaved by
// stepping through the name-sorted list so every run uses the same set. Files
// whose header does not parse are left out (an MTA would not pass them either).
func LoadCorpus(dir string, n int) ([]Message, error) {
	var files []string
	for _, sub := range []string{"ham", "spam"} {
		fs, _ := filepath.Glob(filepath.Join(dir, sub, "*.eml"))
		sort.Strings(fs)
		files = append(files, fs...)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no corpus messages under %s", dir)
	}
	step := max(1, len(files)/max(n, 1))
	var out []Message
	for i := 0; i < len(files) && len(out) < n; i += step {
		raw, err := os.ReadFile(files[i])
		if err != nil {
			return nil, err
		}
		if bytes.HasPrefix(raw, []byte("From ")) { // mbox separator line
			if j := bytes.IndexByte(raw, '\n'); j >= 0 {
				raw = raw[j+1:]
			}
		}
		raw = bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		br := bufio.NewReader(bytes.NewReader(raw))
		h, err := textproto.ReadHeader(br)
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(br)
		out = append(out, Message{h, body})
	}
	return out, nil
}

// Session opens one MTA-side session through CONNECT and HELO.
func Session(addr string, timeout time.Duration) (*gomilter.ClientSession, error) {
	c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		ReadTimeout: timeout, WriteTimeout: timeout,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		return nil, err
	}
	if _, err := s.Conn("client.test", gomilter.FamilyInet, 25000, "192.0.2.10"); err != nil {
		s.Close()
		return nil, err
	}
	if _, err := s.Helo("client.test"); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Send runs one message transaction as Postfix does (MAIL with its macros,
// RCPT, the header fields, body chunks, end of message with the queue ID) and
// returns the final action.
func Send(s *gomilter.ClientSession, m Message, id int) (*gomilter.Action, error) {
	queueID := fmt.Sprintf("Q%08X", id)
	if err := s.Macros(gomilter.CodeMail, "{mail_addr}", "sender@remote.test", "i", queueID); err != nil {
		return nil, err
	}
	if act, err := s.Mail("sender@remote.test", nil); err != nil || act.Code != gomilter.ActContinue {
		return act, err
	}
	if act, err := s.Rcpt("alice@example.com", nil); err != nil || act.Code != gomilter.ActContinue {
		return act, err
	}
	if act, err := s.Header(m.Header); err != nil || act.Code != gomilter.ActContinue {
		return act, err
	}
	if err := s.Macros(gomilter.CodeEOB, "i", queueID); err != nil {
		return nil, err
	}
	_, act, err := s.BodyReadFrom(bytes.NewReader(m.Body))
	return act, err
}
