package sieve

import (
	"os"
	"strings"
	"testing"
)

// TestExtracttextModifierPrecedence: extracttext takes set's modifiers under
// the same rules (RFC 5703 section 7, RFC 5229 section 4): two of the same
// precedence are an error at their position. extracttext accepted
// ":lower :upper" and applied one after the other, silently.
func TestExtracttextModifierPrecedence(t *testing.T) {
	for _, mods := range []string{":lower :upper", ":upperfirst :lowerfirst", ":quotewildcard :quoteregex"} {
		src := "require [\"variables\",\"foreverypart\",\"extracttext\",\"regex\"];\nforeverypart {\n  extracttext " + mods + " \"t\";\n}\n"
		_, err := Compile("x.sieve", []byte(src), nil)
		second := mods[strings.LastIndexByte(mods, ':'):]
		want := "x.sieve:3:" + itoa(15+strings.LastIndexByte(mods, ':')) + ": modifiers " + second + " and the other modifier of the same precedence cannot be used together"
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", mods, err, want)
		}
	}
	// the precedence order still applies
	src := `require ["variables","foreverypart","extracttext"];
		foreverypart { extracttext :length :upper "t"; }`
	if _, err := Compile("x.sieve", []byte(src), nil); err != nil {
		t.Error(err)
	}
}

// TestEnvironmentHost: the environment item "host" is the name of the
// machine the script runs on (RFC 5183 section 4.4). It was the constant
// "localhost", so a shared script testing which server it ran on never
// matched.
func TestEnvironmentHost(t *testing.T) {
	h, err := os.Hostname()
	if err != nil || h == "" || h == "localhost" {
		t.Skipf("hostname %q, %v", h, err)
	}
	src := `require ["environment","variables","fileinto"]; if environment :matches "host" "*" { fileinto "${1}"; }`
	if got := strings.Join(actSummary(execute(t, src)), " "); got != "fileinto:"+h {
		t.Errorf("actions %q, want fileinto:%s", got, h)
	}
}
