package rules

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// ErrPerlOnly marks a pattern that uses a Perl feature RE2 cannot express
// (look-around, back-references, \G, \K, recursion, embedded code).
var ErrPerlOnly = errors.New("uses a Perl-only regex feature")

// splitPattern splits a SpamAssassin pattern "/re/flags" or "m{re}flags" (any
// delimiter after m) into the body and the flags.
func splitPattern(s string) (body, flags string, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", "", errors.New("missing pattern")
	}
	open := s[0]
	rest := s[1:]
	if open == 'm' && len(s) > 1 {
		open = s[1]
		rest = s[2:]
	} else if open != '/' {
		return "", "", fmt.Errorf("pattern %q does not start with / or m", trunc(s))
	}
	closeCh := open
	switch open {
	case '{':
		closeCh = '}'
	case '(':
		closeCh = ')'
	case '[':
		closeCh = ']'
	case '<':
		closeCh = '>'
	}
	i := strings.LastIndexByte(rest, closeCh)
	if i < 0 {
		return "", "", fmt.Errorf("pattern %q has no closing %c", trunc(s), closeCh)
	}
	body, flags = rest[:i], strings.TrimSpace(rest[i+1:])
	if open == '/' {
		body = strings.ReplaceAll(body, `\/`, `/`)
	}
	for _, f := range flags {
		if !strings.ContainsRune("imsxgo", f) {
			return "", "", fmt.Errorf("unknown pattern flag %q", f)
		}
	}
	return body, flags, nil
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Perl's vertical (\v) and horizontal (\h) white space, which RE2 lacks (RE2's
// \v is the vertical tab alone).
const (
	perlVert  = `\n\x0B\f\r\x{85}\x{2028}\x{2029}`
	perlHoriz = `\t \x{A0}\x{1680}\x{180E}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}`
)

// repetition matches a counted quantifier at the start of a string.
var repetition = regexp.MustCompile(`^\{\d+(?:,\d*)?\}`)

// translate compiles a Perl pattern with flags into RE2, rewriting what RE2
// can do another way: /x whitespace and comments, \Q…\E, possessive
// quantifiers and atomic groups (no backtracking in RE2 anyway), \Z, \h, \v,
// \R.
func translate(body, flags string) (*regexp.Regexp, error) {
	var out strings.Builder
	x := strings.ContainsRune(flags, 'x')
	inClass := false
	// quant is set right after a quantifier: a '+' there makes it possessive
	// (dropped), anywhere else '+' is a quantifier itself. Tracking this,
	// rather than looking at the previous byte, keeps the '+' in \x{41}+.
	quant := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		wasQuant := quant
		quant = false
		switch {
		case c == '\\' && i+1 < len(body):
			n := body[i+1]
			xr, xlen := utf8Escape(body[i:]) // xlen 0 unless \xHH… spells a UTF-8 character
			switch {
			case n == 'Q':
				end := strings.Index(body[i+2:], `\E`)
				lit := body[i+2:]
				if end >= 0 {
					lit = body[i+2 : i+2+end]
					i = i + 2 + end + 1
				} else {
					i = len(body)
				}
				out.WriteString(regexp.QuoteMeta(lit))
				continue
			case n >= '1' && n <= '9' && !inClass:
				return nil, fmt.Errorf("back-reference \\%c: %w", n, ErrPerlOnly)
			case n == 'G' || n == 'K':
				return nil, fmt.Errorf("\\%c: %w", n, ErrPerlOnly)
			case n == 'Z':
				out.WriteString(`(?:\n?\z)`)
			case n == 'h' || n == 'v':
				set := map[byte]string{'h': perlHoriz, 'v': perlVert}[n]
				if inClass {
					out.WriteString(set)
				} else {
					out.WriteString("[" + set + "]")
				}
			case n == 'H' || n == 'V':
				if inClass {
					return nil, fmt.Errorf("\\%c inside a character class is not supported", n)
				}
				out.WriteString("[^" + map[byte]string{'H': perlHoriz, 'V': perlVert}[n] + "]")
			case n == 'R' && !inClass:
				out.WriteString(`(?:\r\n|[` + perlVert + `])`)
			case n == 'e':
				out.WriteString(`\x1b`)
			case xlen > 0 && !inClass:
				// \xe2\x80\x8b: Perl matches these bytes, which in
				// SpamAssassin's text are the UTF-8 of U+200B. Our text is
				// decoded to runes, where RE2's \xe2 is U+00E2: the rule
				// would never match. Written as the rune it spells, it does.
				fmt.Fprintf(&out, `\x{%x}`, xr)
				i += xlen - 1
				continue
			case (n == 'x' || n == 'p' || n == 'P' || n == 'N' || n == 'o') && i+2 < len(body) && body[i+2] == '{':
				// \x{41}, \p{Lu}: one atom, whose '}' is not a quantifier's.
				end := strings.IndexByte(body[i+2:], '}')
				if end < 0 {
					return nil, fmt.Errorf("unterminated \\%c{", n)
				}
				out.WriteString(body[i : i+2+end+1])
				i += 2 + end
				continue
			default:
				out.WriteByte(c)
				out.WriteByte(n)
			}
			i++
			continue
		case inClass:
			if c == ']' {
				inClass = false
			}
			out.WriteByte(c)
			continue
		case c == '[':
			inClass = true
			out.WriteByte(c)
			// A ']' right after '[' or '[^' is literal.
			if i+1 < len(body) && body[i+1] == '^' {
				out.WriteByte('^')
				i++
			}
			if i+1 < len(body) && body[i+1] == ']' {
				out.WriteString(`\]`)
				i++
			}
			continue
		case x && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			quant = wasQuant
			continue
		case x && c == '#':
			for i < len(body) && body[i] != '\n' {
				i++
			}
			quant = wasQuant
			continue
		case c == '(' && strings.HasPrefix(body[i:], "(?"):
			rest := body[i+2:]
			switch {
			case strings.HasPrefix(rest, "<=") || strings.HasPrefix(rest, "<!") || strings.HasPrefix(rest, "=") || strings.HasPrefix(rest, "!"):
				return nil, fmt.Errorf("look-around: %w", ErrPerlOnly)
			case strings.HasPrefix(rest, ">"):
				out.WriteString("(?:")
				i += 2
				continue
			case strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, "?{") || strings.HasPrefix(rest, "R") ||
				strings.HasPrefix(rest, "&") || strings.HasPrefix(rest, "(") || strings.HasPrefix(rest, "|") ||
				len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9':
				return nil, fmt.Errorf("(?%c: %w", rest[0], ErrPerlOnly)
			case strings.HasPrefix(rest, "#"):
				end := strings.IndexByte(rest, ')')
				if end < 0 {
					return nil, errors.New("unterminated (?# comment")
				}
				i += 2 + end
				continue
			}
		case c == '+' && wasQuant:
			// Possessive quantifier: drop the '+'.
			continue
		case c == '?' && wasQuant:
			// Lazy quantifier: kept, and it ends the quantifier.
		case c == '*' || c == '+' || c == '?':
			quant = true
		case c == '{':
			if m := repetition.FindString(body[i:]); m != "" {
				out.WriteString(m)
				i += len(m) - 1
				quant = true
				continue
			}
		}
		out.WriteByte(c)
	}
	prefix := ""
	for _, f := range flags {
		if f == 'i' || f == 'm' || f == 's' {
			prefix += string(f)
		}
	}
	pat := out.String()
	if prefix != "" {
		pat = "(?" + prefix + ")" + pat
	}
	re, err := regexp.Compile(pat)
	if err != nil {
		return nil, fmt.Errorf("regex: %w", err)
	}
	return re, nil
}

// utf8Escape reads the run of \xHH escapes at the start of s that spells
// one multi-byte UTF-8 character: that character and the run's length, or
// length 0.
func utf8Escape(s string) (rune, int) {
	var b []byte
	for len(b) < utf8.UTFMax && len(s) >= 4*(len(b)+1) {
		e := s[4*len(b) : 4*len(b)+4]
		if e[0] != '\\' || e[1] != 'x' || !isHex(e[2]) || !isHex(e[3]) {
			break
		}
		b = append(b, unhex(e[2])<<4|unhex(e[3]))
		if r, n := utf8.DecodeRune(b); n == len(b) && n > 1 {
			return r, 4 * n
		}
	}
	return 0, 0
}
