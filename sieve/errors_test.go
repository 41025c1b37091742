package sieve

import (
	"context"
	"errors"
	"testing"
)

// TestRuntimeErrorPosition: a runtime error names the line and column of the
// command that failed (Pigeonhole logs "user.sieve: line 4: error: ..."),
// so an admin can tell which of several redirects or fileintos of a script
// broke delivery.
func TestRuntimeErrorPosition(t *testing.T) {
	src := "require [\"variables\",\"fileinto\"];\n" +
		"set \"to\" \"not an address\";\n" +
		"if true {\n" +
		"  redirect \"ok@example.org\";\n" +
		"  redirect \"${to}\";\n" +
		"}\n"
	s := mustCompile(t, src)
	_, err := s.Execute(context.Background(), &Env{Message: NewMessage([]byte(testMsg))})
	var re *RuntimeError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a runtime error", err)
	}
	if re.Line != 5 || re.Col != 3 {
		t.Errorf("position %d:%d, want 5:3", re.Line, re.Col)
	}
	if want := "test.sieve:5:3: specified redirect address 'not an address' is invalid"; err.Error() != want {
		t.Errorf("error %q, want %q", err.Error(), want)
	}
}
