package lmtpd

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/internal/header"
)

// maxHeaderScan bounds how much of a message the header helpers look at.
const maxHeaderScan = 256 << 10

// headerBlock returns the header part of an LF message (without the blank line).
func headerBlock(msg []byte) []byte {
	if len(msg) > maxHeaderScan {
		msg = msg[:maxHeaderScan]
	}
	if bytes.HasPrefix(msg, []byte("\n")) {
		return nil
	}
	if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		return msg[:i+1]
	}
	return msg
}

// field is one header field: name and unfolded value.
type field struct{ Name, Value string }

// parseHeader splits an LF header block into fields. Garbage lines end the header,
// as in every MUA; values are unfolded and trimmed.
func parseHeader(h []byte) []field {
	var out []field
	for len(h) > 0 {
		end := 0
		for {
			nl := bytes.IndexByte(h[end:], '\n')
			if nl < 0 {
				end = len(h)
				break
			}
			end += nl + 1
			if end < len(h) && (h[end] == ' ' || h[end] == '\t') {
				continue
			}
			break
		}
		line := h[:end]
		h = h[end:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || bytes.ContainsAny(line[:colon], " \t\n") {
			break
		}
		v := strings.Join(strings.Fields(string(line[colon+1:])), " ")
		out = append(out, field{Name: string(line[:colon]), Value: v})
	}
	return out
}

func getHeader(fs []field, name string) (string, bool) {
	for _, f := range fs {
		if strings.EqualFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

// postfixQueueID extracts the queue ID from the topmost Received header Postfix
// added ("... by host (Postfix) with ESMTP id 4XyZ1234; date"); Postfix's LMTP client
// does not pass the ID any other way.
func postfixQueueID(fs []field) string {
	for _, f := range fs {
		if !strings.EqualFold(f.Name, "Received") {
			continue
		}
		if !strings.Contains(f.Value, "(Postfix)") {
			return "" // the topmost Received is not Postfix's
		}
		words := strings.Fields(f.Value)
		for i := 0; i+1 < len(words); i++ {
			if words[i] == "id" {
				id := strings.TrimRight(words[i+1], ";")
				if validQueueID(id) {
					return id
				}
			}
		}
		return ""
	}
	return ""
}

func validQueueID(s string) bool {
	if len(s) < 5 || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// spamInfo is what the milter's headers say.
type spamInfo struct {
	Flag     bool
	Score    float64
	HasScore bool
	Symbols  []string
}

// parseSpam reads X-Spam-Flag, X-Spam-Score and X-Spam-Status ("Yes, score=9.1
// required=5.0 tests=A,B") — the SpamAssassin-style headers our milter writes.
func parseSpam(fs []field) spamInfo {
	var si spamInfo
	if v, ok := getHeader(fs, "X-Spam-Flag"); ok {
		si.Flag = strings.EqualFold(strings.TrimSpace(v), "yes")
	}
	if v, ok := getHeader(fs, "X-Spam-Score"); ok {
		if w := strings.Fields(v); len(w) > 0 {
			if f, err := strconv.ParseFloat(w[0], 64); err == nil {
				si.Score, si.HasScore = f, true
			}
		}
	}
	if v, ok := getHeader(fs, "X-Spam-Status"); ok {
		if strings.HasPrefix(strings.ToLower(v), "yes") {
			si.Flag = true
		}
		for _, w := range strings.Fields(v) {
			switch {
			case strings.HasPrefix(w, "score=") && !si.HasScore:
				if f, err := strconv.ParseFloat(strings.TrimSuffix(w[6:], ","), 64); err == nil {
					si.Score, si.HasScore = f, true
				}
			case strings.HasPrefix(w, "tests="):
				for _, s := range strings.Split(strings.TrimSuffix(w[6:], ","), ",") {
					if s != "" && s != "none" {
						si.Symbols = append(si.Symbols, s)
					}
				}
			}
		}
	}
	if v, ok := getHeader(fs, "X-Spam-Symbols"); ok && len(si.Symbols) == 0 {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				si.Symbols = append(si.Symbols, s)
			}
		}
	}
	if len(si.Symbols) > 100 {
		si.Symbols = si.Symbols[:100]
	}
	return si
}

// trace is what the Received header tells about the hop.
type trace struct {
	from        string // envelope sender
	deliveredTo string // the one recipient, or "" (Delivered-To and "for" only then)
	host        string // our host name
	helo        string // the client's LHLO name
	ip          string // the client's address ("" on a unix socket)
	id          string // session/transaction id
}

// traceHeaders builds Return-Path, Delivered-To (single recipient only, as Dovecot)
// and Received in Dovecot LMTP's layout for the delivered copy.
func traceHeaders(t trace, withReceived bool, now time.Time) []byte {
	var b bytes.Buffer
	b.WriteString("Return-Path: <" + headerSafe(t.from) + ">\n")
	if t.deliveredTo != "" {
		b.WriteString("Delivered-To: " + headerSafe(t.deliveredTo) + "\n")
	}
	if withReceived {
		b.WriteString("Received: from " + hostToken(t.helo, t.host))
		if ip := hostToken(t.ip, ""); ip != "" {
			b.WriteString(" ([" + ip + "])")
		}
		b.WriteString("\n\tby " + t.host + " (dovetail) with LMTP\n\tid " + t.id +
			"\n\t(envelope-from <" + headerSafe(t.from) + ">)")
		if t.deliveredTo != "" {
			b.WriteString("\n\tfor <" + headerSafe(t.deliveredTo) + ">")
		}
		b.WriteString("; " + now.Format(time.RFC1123Z) + "\n")
	}
	return b.Bytes()
}

// hostToken returns s when it is a plausible host name or address literal (the
// LHLO argument is client-controlled), else def.
func hostToken(s, def string) string {
	if s == "" || len(s) > 255 {
		return def
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_:[]", c) >= 0) {
			return def
		}
	}
	return s
}

// headerSafe removes line breaks and NULs from envelope data before it goes into a
// header (an envelope address is attacker-controlled).
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return -1
		}
		return r
	}, s)
}

// foldField renders "name: value" folded (header.Fold): a vacation subject
// taken from a long non-ASCII original or a long References field ran past
// the 998-character line limit. value has no line breaks (headerSafe);
// lines end in LF, as the reply's do.
func foldField(name, value string) string {
	return name + ":" + strings.ReplaceAll(header.Fold(name, " "+value), "\r\n", "\n") + "\n"
}
