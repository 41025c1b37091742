package sieve

import (
	"fmt"
	"strings"
)

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tTag
	tNumber
	tString
	tLBracket
	tRBracket
	tLParen
	tRParen
	tLBrace
	tRBrace
	tComma
	tSemicolon
	tError
)

func (k tokKind) String() string {
	switch k {
	case tEOF:
		return "end of script"
	case tIdent:
		return "identifier"
	case tTag:
		return "tag"
	case tNumber:
		return "number"
	case tString:
		return "string"
	case tLBracket:
		return "'['"
	case tRBracket:
		return "']'"
	case tLParen:
		return "'('"
	case tRParen:
		return "')'"
	case tLBrace:
		return "'{'"
	case tRBrace:
		return "'}'"
	case tComma:
		return "','"
	case tSemicolon:
		return "';'"
	}
	return "invalid token"
}

// Pos is a 1-based line:column position in a script.
type Pos struct{ Line, Col int }

var singleTok = [256]tokKind{'[': tLBracket, ']': tRBracket, '(': tLParen, ')': tRParen, '{': tLBrace, '}': tRBrace, ',': tComma, ';': tSemicolon}

type token struct {
	kind tokKind
	pos  Pos
	str  string // identifier/tag name (lower-cased), string value
	num  int64
	text bool // multi-line string
}

type lexer struct {
	src       []byte
	i         int
	line, col int
	errs      *errList
	ntok      int
	maxTok    int
}

type errList struct {
	script string
	list   []*PosError
	max    int
}

func (e *errList) add(p Pos, format string, args ...any) {
	if e.max > 0 && len(e.list) >= e.max {
		return
	}
	e.list = append(e.list, &PosError{Script: e.script, Line: p.Line, Col: p.Col, Msg: fmt.Sprintf(format, args...)})
}

func newLexer(src []byte, errs *errList, maxTok int) *lexer {
	return &lexer{src: src, line: 1, col: 1, errs: errs, maxTok: maxTok}
}

func (l *lexer) adv() {
	if l.src[l.i] == '\n' {
		l.line++
		l.col = 1
	} else {
		l.col++
	}
	l.i++
}

func (l *lexer) pos() Pos { return Pos{l.line, l.col} }

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// next returns the next token; lexical errors are reported and skipped.
func (l *lexer) next() token {
	for {
		t, ok := l.scan()
		if ok {
			l.ntok++
			if l.maxTok > 0 && l.ntok > l.maxTok {
				l.errs.add(t.pos, "script exceeds the token limit (%d)", l.maxTok)
				l.i = len(l.src)
				return token{kind: tEOF, pos: t.pos}
			}
			return t
		}
	}
}

func (l *lexer) scan() (token, bool) {
	// skip whitespace and comments
	for l.i < len(l.src) {
		c := l.src[l.i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			l.adv()
			continue
		}
		if c == '#' {
			for l.i < len(l.src) && l.src[l.i] != '\n' {
				l.adv()
			}
			continue
		}
		if c == '/' && l.i+1 < len(l.src) && l.src[l.i+1] == '*' {
			p := l.pos()
			l.adv()
			l.adv()
			closed := false
			for l.i < len(l.src) {
				if l.src[l.i] == '*' && l.i+1 < len(l.src) && l.src[l.i+1] == '/' {
					l.adv()
					l.adv()
					closed = true
					break
				}
				l.adv()
			}
			if !closed {
				l.errs.add(p, "end of file before end of bracket comment ('/* */') started")
			}
			continue
		}
		break
	}
	p := l.pos()
	if l.i >= len(l.src) {
		return token{kind: tEOF, pos: p}, true
	}
	c := l.src[l.i]
	if k := singleTok[c]; k != 0 {
		l.adv()
		return token{kind: k, pos: p}, true
	}
	switch {
	case c == ':':
		l.adv()
		if l.i >= len(l.src) || !isIdentStart(l.src[l.i]) {
			l.errs.add(p, "unexpected character ':' (tag without name)")
			return token{}, false
		}
		s := l.i
		for l.i < len(l.src) && isIdentChar(l.src[l.i]) {
			l.adv()
		}
		return token{kind: tTag, pos: p, str: strings.ToLower(string(l.src[s:l.i]))}, true
	case c >= '0' && c <= '9':
		var n int64
		overflow := false
		for l.i < len(l.src) && l.src[l.i] >= '0' && l.src[l.i] <= '9' {
			n = n*10 + int64(l.src[l.i]-'0')
			if n > 1<<32 {
				overflow = true
				n = 1 << 32
			}
			l.adv()
		}
		if l.i < len(l.src) {
			mult := int64(1)
			switch l.src[l.i] {
			case 'k', 'K':
				mult = 1 << 10
			case 'm', 'M':
				mult = 1 << 20
			case 'g', 'G':
				mult = 1 << 30
			}
			if mult != 1 {
				l.adv()
				n *= mult
			}
		}
		if l.i < len(l.src) && isIdentChar(l.src[l.i]) {
			l.errs.add(p, "invalid number: unexpected character after number")
			for l.i < len(l.src) && isIdentChar(l.src[l.i]) {
				l.adv()
			}
			return token{}, false
		}
		if overflow || n > 1<<32-1 {
			l.errs.add(p, "number is out of range")
			n = 1<<32 - 1
		}
		return token{kind: tNumber, pos: p, num: n}, true
	case c == '"':
		l.adv()
		var b strings.Builder
		for {
			if l.i >= len(l.src) {
				l.errs.add(p, "end of file before end of quoted string")
				return token{kind: tString, pos: p, str: b.String()}, true
			}
			ch := l.src[l.i]
			if ch == '"' {
				l.adv()
				break
			}
			if ch == '\\' {
				l.adv()
				if l.i >= len(l.src) {
					continue
				}
				ch = l.src[l.i]
			}
			if ch == '\r' && l.i+1 < len(l.src) && l.src[l.i+1] == '\n' {
				l.adv()
				continue
			}
			if ch == '\n' {
				b.WriteString("\r\n")
				l.adv()
				continue
			}
			b.WriteByte(ch)
			l.adv()
		}
		return token{kind: tString, pos: p, str: b.String()}, true
	case isIdentStart(c):
		s := l.i
		for l.i < len(l.src) && isIdentChar(l.src[l.i]) {
			l.adv()
		}
		word := strings.ToLower(string(l.src[s:l.i]))
		if word == "text" && l.i < len(l.src) && l.src[l.i] == ':' {
			l.adv()
			return l.multiline(p), true
		}
		return token{kind: tIdent, pos: p, str: word}, true
	}
	l.errs.add(p, "unexpected character '%s'", printable(c))
	l.adv()
	return token{}, false
}

func printable(c byte) string {
	if c < 0x20 || c >= 0x7f {
		return fmt.Sprintf("\\x%02x", c)
	}
	return string(c)
}

func (l *lexer) multiline(p Pos) token {
	// optional whitespace, optional comment, then newline
	for l.i < len(l.src) && (l.src[l.i] == ' ' || l.src[l.i] == '\t') {
		l.adv()
	}
	if l.i < len(l.src) && l.src[l.i] == '#' {
		for l.i < len(l.src) && l.src[l.i] != '\n' {
			l.adv()
		}
	}
	if l.i < len(l.src) && l.src[l.i] == '\r' {
		l.adv()
	}
	if l.i >= len(l.src) || l.src[l.i] != '\n' {
		l.errs.add(p, "invalid character after 'text:' (expected newline)")
		for l.i < len(l.src) && l.src[l.i] != '\n' {
			l.adv()
		}
		if l.i >= len(l.src) {
			return token{kind: tString, pos: p, text: true}
		}
	}
	l.adv()
	var b strings.Builder
	for {
		if l.i >= len(l.src) {
			l.errs.add(p, "end of file before end of multi-line string")
			return token{kind: tString, pos: p, str: b.String(), text: true}
		}
		// read a line
		s := l.i
		for l.i < len(l.src) && l.src[l.i] != '\n' {
			l.adv()
		}
		line := string(l.src[s:l.i])
		if l.i < len(l.src) {
			l.adv()
		}
		line = strings.TrimSuffix(line, "\r")
		if line == "." {
			break
		}
		if strings.HasPrefix(line, "..") {
			line = line[1:]
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	return token{kind: tString, pos: p, str: b.String(), text: true}
}
