package sieve

import (
	"fmt"
	"math"
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
	tColon   // ':' not starting a tag
	tSlash   // '/' not starting a comment
	tGarbage // characters that start no token (reported once per run)
	tError   // a token the lexer reported an error for
)

func (k tokKind) String() string {
	switch k {
	case tEOF:
		return "end of file"
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
	case tColon:
		return "':'"
	case tSlash:
		return "'/'"
	case tGarbage:
		return "unknown characters"
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
	limited   bool // past maxTok: the rest of the script is not read
	lastKind  tokKind
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

// maxIdentifierLen bounds identifiers and tag names (Pigeonhole's
// SIEVE_MAX_IDENTIFIER_LEN).
const maxIdentifierLen = 32

// next returns the next token. Lexical errors are reported here and yield a
// tError token (the parser then reports nothing more for it), like
// Pigeonhole's lexer; a run of unknown characters is reported once.
//
// Past the token limit the error token is followed by the end of file: the
// parser's recovery skips tokens up to a closing delimiter or the end of file,
// so an endless run of error tokens made it loop forever.
func (l *lexer) next() token {
	if l.limited {
		return token{kind: tEOF, pos: l.pos()}
	}
	t := l.scan()
	l.lastKind = t.kind
	l.ntok++
	if l.maxTok > 0 && l.ntok > l.maxTok {
		l.errs.add(t.pos, "script exceeds the token limit (%d)", l.maxTok)
		l.limited = true
		l.i = len(l.src)
		return token{kind: tError, pos: t.pos}
	}
	return t
}

func (l *lexer) errTok(p Pos, format string, args ...any) token {
	l.errs.add(p, format, args...)
	return token{kind: tError, pos: p}
}

func (l *lexer) scan() token {
	// skip whitespace and comments
	start := l.i
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
				return l.errTok(p, "end of file before end of bracket comment ('/* ... */') started at line %d", p.Line)
			}
			continue
		}
		break
	}
	p := l.pos()
	if l.i >= len(l.src) {
		return token{kind: tEOF, pos: p}
	}
	c := l.src[l.i]
	if k := singleTok[c]; k != 0 {
		l.adv()
		return token{kind: k, pos: p}
	}
	switch {
	case c == ':':
		l.adv()
		if l.i >= len(l.src) || !isIdentStart(l.src[l.i]) {
			return token{kind: tColon, pos: p}
		}
		s := l.i
		for l.i < len(l.src) && isIdentChar(l.src[l.i]) {
			l.adv()
		}
		if l.i-s > maxIdentifierLen {
			return l.errTok(p, "encountered impossibly long tag identifier ':%s'", l.src[s:s+maxIdentifierLen])
		}
		return token{kind: tTag, pos: p, str: strings.ToLower(string(l.src[s:l.i]))}
	case c == '/':
		l.adv()
		return token{kind: tSlash, pos: p}
	case c >= '0' && c <= '9':
		// Numbers are unsigned 64-bit as in Pigeonhole; values beyond
		// MaxInt64 (far larger than any size or count) are clamped.
		var n uint64
		overflow := false
		for l.i < len(l.src) && l.src[l.i] >= '0' && l.src[l.i] <= '9' {
			d := uint64(l.src[l.i] - '0')
			if n > (math.MaxUint64-d)/10 {
				overflow = true
			}
			n = n*10 + d
			l.adv()
		}
		if !overflow && l.i < len(l.src) {
			shift := 0
			switch l.src[l.i] {
			case 'k', 'K':
				shift = 10
			case 'm', 'M':
				shift = 20
			case 'g', 'G':
				shift = 30
			}
			if shift > 0 {
				l.adv()
				if n > math.MaxUint64>>shift {
					overflow = true
				}
				n <<= shift
			}
		}
		if overflow {
			for l.i < len(l.src) && isIdentChar(l.src[l.i]) {
				l.adv()
			}
			return l.errTok(p, "number exceeds integer limits (max %d)", uint64(math.MaxUint64))
		}
		if l.i < len(l.src) && isIdentChar(l.src[l.i]) {
			for l.i < len(l.src) && isIdentChar(l.src[l.i]) {
				l.adv()
			}
			return l.errTok(p, "invalid number: unexpected character after number")
		}
		if n > math.MaxInt64 {
			n = math.MaxInt64
		}
		return token{kind: tNumber, pos: p, num: int64(n)}
	case c == '"':
		l.adv()
		var b strings.Builder
		for {
			if l.i >= len(l.src) {
				return l.errTok(p, "end of file before end of quoted string started at line %d", p.Line)
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
		return token{kind: tString, pos: p, str: b.String()}
	case isIdentStart(c):
		s := l.i
		for l.i < len(l.src) && isIdentChar(l.src[l.i]) {
			l.adv()
		}
		word := strings.ToLower(string(l.src[s:l.i]))
		if word == "text" && l.i < len(l.src) && l.src[l.i] == ':' {
			l.adv()
			return l.multiline(p)
		}
		if len(word) > maxIdentifierLen {
			return l.errTok(p, "encountered impossibly long identifier '%s'", word[:maxIdentifierLen])
		}
		return token{kind: tIdent, pos: p, str: word}
	}
	l.adv()
	if l.lastKind != tGarbage || l.i-1 != start {
		l.errs.add(p, "unexpected character(s) starting with '%s'", printable(c))
	}
	return token{kind: tGarbage, pos: p}
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
		if l.i >= len(l.src) {
			return l.errTok(p, "end of file before end of multi-line string")
		}
		return l.errTok(p, "invalid character '%s' after 'text:' in multi-line string", printable(l.src[l.i]))
	}
	l.adv()
	var b strings.Builder
	for {
		if l.i >= len(l.src) {
			return l.errTok(p, "end of file before end of multi-line string")
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
