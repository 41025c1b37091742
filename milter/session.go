package milter

import (
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/dovetail-mail/dovetail/spam/message"
)

// Limits on what one connection may make us keep, whatever the MTA sends.
const (
	maxRcpts       = 1000
	maxHeaders     = 10000
	maxMacros      = 200
	maxMacroLen    = 4096
	maxHeaderBytes = 1 << 20
)

// messageMacros are cleared when a message ends; everything else (connect,
// HELO and auth macros) lives as long as the connection.
var messageMacros = map[string]bool{
	"i": true, "{mail_addr}": true, "{mail_host}": true, "{mail_mailer}": true,
	"{rcpt_addr}": true, "{rcpt_host}": true, "{rcpt_mailer}": true,
}

// session is one MTA connection: go-milter's backend for its whole life (see
// the package doc for why it is not replaced per message).
type session struct {
	srv *Server
	// noHeaderReply: SMFIP_NOHREPL was negotiated, Header must not answer.
	noHeaderReply bool
	conn          *trackedConn // nil if the library ever creates a session outside Accept

	// connection state
	macros     map[string]string
	clientHost string
	clientIP   net.IP
	clientPort uint16
	helo       string

	// message state, reset by endMessage
	from        string
	rcpts       []string
	headerCount int // fields passed to the scan, at most maxHeaders
	headerBytes int
	edits       fieldTally
	builder     *message.Builder
	size        int64
	oversize    bool
	started     time.Time
}

// fieldTally counts the fields editHeaders deletes, over the whole header
// (also past maxHeaders and maxHeaderBytes, which only bound what is
// scanned: a forged X-Spam-Flag after 10,000 fields must go too). CHGHEADER
// addresses a field by its name and per-name index, so counts are all it
// needs: memory grows with the distinct names, not with the fields.
type fieldTally struct {
	spam      map[string]*nameCount // lower-case X-Spam-* name
	spamOrder []string              // keys of spam, first seen first
	nameBytes int
	ar        int   // Authentication-Results fields seen
	arOurs    []int // indexes of those claiming our authserv-id
}

type nameCount struct {
	name string // spelling of the first occurrence
	n    int
}

// maxSpamNames bounds the memory invented X-Spam-* names can take; past it
// only the well-known names are still counted.
const maxSpamNames = 1000

// wellKnownSpam are the X-Spam-* names we add and Sieve scripts test: always
// counted, however many invented names came first.
var wellKnownSpam = map[string]bool{
	"x-spam-flag": true, "x-spam-status": true, "x-spam-score": true, "x-spam-level": true,
	"x-spam-checker-version": true, "x-spam-report": true, "x-spam-skipped": true,
}

// add counts one field; id is our authserv-id ("" claims nothing).
func (t *fieldTally) add(name, value, id string) {
	key := strings.ToLower(name)
	switch {
	case strings.HasPrefix(key, "x-spam-"):
		c := t.spam[key]
		if c == nil {
			if !wellKnownSpam[key] && (len(t.spam) >= maxSpamNames || t.nameBytes+len(key) > maxHeaderBytes) {
				return
			}
			if t.spam == nil {
				t.spam = map[string]*nameCount{}
			}
			c = &nameCount{name: name}
			t.spam[key] = c
			t.spamOrder = append(t.spamOrder, key)
			t.nameBytes += len(key)
		}
		c.n++
	case key == "authentication-results":
		t.ar++
		if id != "" && strings.EqualFold(message.AuthservID(value), id) {
			t.arOurs = append(t.arOurs, t.ar)
		}
	}
}

func (s *Server) newSession(c *trackedConn) *session {
	ss := &session{srv: s, conn: c, macros: map[string]string{}, noHeaderReply: s.cfg.SkipHeaderReplies}
	if c != nil {
		c.release = ss.endMessage
	}
	return ss
}

// merge adds the macros of the current packet to the accumulated map.
func (ss *session) merge(m *gomilter.Modifier) {
	for k, v := range m.Macros {
		if len(k) > maxMacroLen || len(v) > maxMacroLen {
			continue
		}
		if _, ok := ss.macros[k]; !ok && len(ss.macros) >= maxMacros {
			continue
		}
		ss.macros[k] = v
	}
}

func (ss *session) Connect(host, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	ss.merge(m)
	ss.clientHost, ss.clientPort, ss.clientIP = host, port, addr
	return gomilter.RespContinue, nil
}

func (ss *session) Helo(name string, m *gomilter.Modifier) (gomilter.Response, error) {
	ss.merge(m)
	ss.helo = name
	return gomilter.RespContinue, nil
}

func (ss *session) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	// A new MAIL without ABORT/EOM in between (some MTAs) starts over.
	ss.endMessage()
	ss.merge(m)
	ss.from = from
	ss.started = time.Now()
	if ss.conn != nil {
		ss.conn.inMsg.Store(true)
	}
	return gomilter.RespContinue, nil
}

func (ss *session) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	ss.merge(m)
	if len(ss.rcpts) < maxRcpts {
		ss.rcpts = append(ss.rcpts, rcpt)
	}
	return gomilter.RespContinue, nil
}

func (ss *session) Header(name, value string, m *gomilter.Modifier) (gomilter.Response, error) {
	ss.merge(m)
	ss.edits.add(name, value, ss.srv.authservID(ss))
	if ss.headerCount >= maxHeaders || ss.headerBytes > maxHeaderBytes {
		// Still counted in size; the scan sees a truncated header and the
		// engine flags it.
		ss.size += int64(len(name) + len(value) + 4)
		return ss.headerReply(), nil
	}
	ss.headerCount++
	ss.headerBytes += len(name) + len(value)
	// With SMFIP_HDR_LEADSPC the value is everything after the colon, so the
	// field is rebuilt byte for byte (DKIM c=simple hashes it so);
	// continuation lines come with bare LF.
	line := name + ":" + strings.ReplaceAll(strings.ReplaceAll(value, "\r\n", "\n"), "\n", "\r\n") + "\r\n"
	ss.write([]byte(line))
	return ss.headerReply(), nil
}

// headerReply is nil when SMFIP_NOHREPL was negotiated: the MTA expects no
// reply per header, and go-milter writes none for a nil response.
func (ss *session) headerReply() gomilter.Response {
	if ss.noHeaderReply {
		return nil
	}
	return gomilter.RespContinue
}

func (ss *session) Headers(h textproto.MIMEHeader, m *gomilter.Modifier) (gomilter.Response, error) {
	ss.merge(m)
	ss.write([]byte("\r\n"))
	return gomilter.RespContinue, nil
}

func (ss *session) BodyChunk(chunk []byte, m *gomilter.Modifier) (gomilter.Response, error) {
	ss.merge(m)
	ss.write(chunk)
	return gomilter.RespContinue, nil
}

// write feeds the builder until the message passes max_size; after that only
// the size is counted (the message will pass unscanned).
func (ss *session) write(p []byte) {
	ss.size += int64(len(p))
	if ss.oversize {
		return
	}
	if ss.size > int64(ss.srv.config().MaxSize) {
		ss.oversize = true
		if ss.builder != nil {
			ss.builder.Abort()
			ss.builder = nil
		}
		return
	}
	if ss.builder == nil {
		ss.builder = ss.srv.currentScorer().NewBuilder()
	}
	// A spill-file error is remembered by the builder and reported by Finish.
	_, _ = ss.builder.Write(p)
}

func (ss *session) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	ss.merge(m)
	resp := ss.srv.endOfMessage(ss, m)
	ss.endMessage()
	return finalResponse{resp}, nil
}

func (ss *session) Abort(m *gomilter.Modifier) error {
	ss.merge(m)
	ss.endMessage()
	return nil
}

// endMessage drops the message state and message-scoped macros.
func (ss *session) endMessage() {
	if ss.builder != nil {
		ss.builder.Abort()
	}
	ss.from, ss.rcpts, ss.headerCount, ss.headerBytes, ss.edits = "", nil, 0, 0, fieldTally{}
	ss.builder, ss.size, ss.oversize = nil, 0, false
	for k := range ss.macros {
		if messageMacros[k] {
			delete(ss.macros, k)
		}
	}
	if ss.conn != nil {
		// The verdict is written after this: restart the idle clock so
		// Shutdown does not close the connection before it goes out.
		ss.conn.touch()
		ss.conn.inMsg.Store(false)
	}
}

// client returns "host[addr]" like Postfix logs it.
func (ss *session) client() string {
	addr := ss.macros["{client_addr}"]
	if addr == "" && ss.clientIP != nil {
		addr = ss.clientIP.String()
	}
	host := ss.clientHost
	if n := ss.macros["{client_name}"]; n != "" {
		host = n
	}
	if host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("%s[%s]", host, addr)
}

func (ss *session) ip() net.IP {
	if ip := net.ParseIP(ss.macros["{client_addr}"]); ip != nil {
		return ip
	}
	return ss.clientIP
}

// finalResponse is an end-of-message verdict that tells go-milter to keep the
// session's backend (Continue() == true); its packet is the real verdict.
type finalResponse struct{ r gomilter.Response }

func (f finalResponse) Response() *gomilter.Message { return f.r.Response() }
func (f finalResponse) Continue() bool              { return true }
