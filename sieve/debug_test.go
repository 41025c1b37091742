package sieve

import (
	"os"
	"strings"
	"testing"
)

// TestDebugCompile prints the compile errors of $SIEVE_DEBUG_FILES
// (space-separated); a development aid, skipped otherwise.
func TestDebugCompile(t *testing.T) {
	files := os.Getenv("SIEVE_DEBUG_FILES")
	if files == "" {
		t.Skip("SIEVE_DEBUG_FILES not set")
	}
	for _, f := range strings.Fields(files) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Compile(f, src, nil)
		n := 0
		if ce, ok := err.(*CompileError); ok {
			n = len(ce.Errors)
		}
		t.Logf("%s: %d errors\n%v", f, n, err)
	}
}
