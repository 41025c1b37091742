package header

import (
	"strings"
	"testing"
)

// Every line of the folded field fits in MaxLineLen columns or is a single
// word, every line after the first is a continuation line, and removing the
// CRLFs gives back the value.
func TestFold(t *testing.T) {
	long := strings.Repeat("w", 100)
	for _, v := range []string{
		" short",
		" " + strings.Repeat("word ", 40) + "end",
		" " + long,                   // one word: left whole
		" " + long + " tail " + long, // folds around the long words
		" a\r\n\tfolded  value with   runs of  spaces " + strings.Repeat("x ", 50),
		" trailing space at the end of a long line " + strings.Repeat("y", 40) + "   ",
		"   " + strings.Repeat("z", 90) + " z",
	} {
		got := Fold("X-Test", v)
		for i, line := range strings.Split("X-Test:"+got, "\r\n") {
			word := strings.TrimLeft(line, " \t")
			if i == 0 {
				word = strings.TrimLeft(strings.TrimPrefix(line, "X-Test:"), " \t")
			} else if word == "" || line[0] != ' ' && line[0] != '\t' {
				t.Errorf("Fold(%q): line %d %q is not a continuation line", v, i+1, line)
			}
			if len(line) > MaxLineLen && strings.ContainsAny(word, " \t") {
				t.Errorf("Fold(%q): line %d is %d columns: %q", v, i+1, len(line), line)
			}
		}
		if un := strings.ReplaceAll(got, "\r\n", ""); un != strings.ReplaceAll(v, "\r\n", "") {
			t.Errorf("Fold(%q) = %q: unfolds to something else", v, got)
		}
	}
}
