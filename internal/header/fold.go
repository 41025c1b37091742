// Package header folds the header fields dovetail writes: the milter's added
// and changed fields, lmtpd's vacation replies and Sieve's outgoing messages.
package header

import "strings"

// MaxLineLen is RFC 5322's recommended line length (§2.1.1), counted
// without the CRLF.
const MaxLineLen = 78

// Fold folds the value v of field name (as written after the colon, its
// leading space included) before white space wherever a line would pass
// MaxLineLen columns, "name:" counting on the first line. Folds (CRLF)
// already in v are kept, a word longer than a line stays whole, and no line
// of white space only is made, so removing each CRLF gives back v.
// Unfolded, a subject of encoded-words (RFC 2047 §2 wants them on lines of
// at most 76), a References field or an Authentication-Results with several
// long domains can pass the 998-byte limit, and Postfix then breaks the line
// at byte 998 wherever that falls, inside an encoded-word or a domain.
func Fold(name, v string) string {
	var b strings.Builder
	col := len(name) + 1
	for i, line := range strings.Split(v, "\r\n") {
		if i > 0 {
			b.WriteString("\r\n")
			col = 0
		}
		for col+len(line) > MaxLineLen {
			cut := foldPoint(line, MaxLineLen-col)
			if cut < 0 {
				break
			}
			b.WriteString(line[:cut])
			b.WriteString("\r\n")
			line, col = line[cut:], 0
		}
		b.WriteString(line)
		col += len(line)
	}
	return b.String()
}

// foldPoint returns where to fold line: the last space or tab at or before
// width, else the first one after it, that has a word before it on the line
// and a word after it (a line of white space only must not be made);
// -1 when there is none.
func foldPoint(line string, width int) int {
	first := len(line) - len(strings.TrimLeft(line, " \t")) // the first word's start
	end := len(strings.TrimRight(line, " \t"))              // the last word's end
	cut := -1
	for j := first + 1; j < end; j++ {
		if line[j] != ' ' && line[j] != '\t' {
			continue
		}
		if j > width && cut >= 0 {
			break
		}
		cut = j
		if j > width {
			break
		}
	}
	return cut
}
