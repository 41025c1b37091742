package sieve

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

// failingLoader fails to read every script with err.
type failingLoader struct{ err error }

func (l failingLoader) LoadScript(IncludeLocation, string) ([]byte, error) { return nil, l.err }

// TestIncludeReadErrorIsNotMissing: only ErrScriptNotFound means an included
// script does not exist (as Pigeonhole's SIEVE_ERROR_NOT_FOUND). Any other
// loader failure (permission denied, an I/O error, a script over the size
// limit) was taken for a missing script: ":optional" silently compiled the
// script without it (a global spam rule included :optional stopped applying,
// and lmtpd kept that compilation cached), and without ":optional" the admin
// read "does not exist" for a file that is there.
func TestIncludeReadErrorIsNotMissing(t *testing.T) {
	readErr := fmt.Errorf("open /etc/sieve/spam.sieve: %w", fs.ErrPermission)
	for _, src := range []string{
		"require \"include\";\ninclude :optional :global \"spam\";",
		"require \"include\";\ninclude :global \"spam\";",
	} {
		_, err := Compile("user", []byte(src), &Options{Includes: failingLoader{readErr}})
		var ce *CompileError
		if !errors.As(err, &ce) {
			t.Fatalf("%q: err = %v, want a compile error", src, err)
		}
		msg := ce.Errors[0].Error()
		if !strings.HasPrefix(msg, "user:2:1: ") || !strings.Contains(msg, "'spam'") || !strings.Contains(msg, "permission denied") || strings.Contains(msg, "does not exist") {
			t.Errorf("%q: error %q, want the read failure at 2:1", src, msg)
		}
	}
	// a missing script (wrapped ErrScriptNotFound) is still skipped by :optional
	missing := failingLoader{fmt.Errorf("spam: %w", ErrScriptNotFound)}
	if _, err := Compile("user", []byte(`require "include"; include :optional "spam";`), &Options{Includes: missing}); err != nil {
		t.Errorf("optional missing script: %v", err)
	}
	_, err := Compile("user", []byte(`require "include"; include "spam";`), &Options{Includes: missing})
	if err == nil || !strings.Contains(err.Error(), "included personal script 'spam' does not exist") {
		t.Errorf("missing script: %v", err)
	}
}
