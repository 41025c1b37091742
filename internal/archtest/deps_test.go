// Package archtest enforces the dependency direction of the layout: daemons
// never import each other, lmtpd never imports the spam engine (it reads the
// milter's headers), and shared leaves never import daemons or the CLI.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/dovetail-mail/dovetail/"

var daemons = []string{"authd", "policyd", "milter", "lmtpd"}

func deps(t *testing.T, pkg string) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-test=false", mod+pkg+"/...").Output()
	if err != nil {
		t.Logf("package %s not present (%v)", pkg, err)
		return nil
	}
	m := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		m[l] = true
	}
	return m
}

func TestDependencyDirection(t *testing.T) {
	forbidden := map[string][]string{
		"lmtpd":      {"spam", "milter"},
		"sieve":      append([]string{"internal/cli"}, daemons...),
		"spam":       append([]string{"internal/cli"}, daemons...),
		"store":      append([]string{"internal/cli"}, daemons...),
		"directory":  append([]string{"internal/cli"}, daemons...),
		"quarantine": append([]string{"internal/cli"}, daemons...),
		"dnsbl":      append([]string{"internal/cli"}, daemons...),
	}
	for _, d := range daemons {
		for _, o := range daemons {
			if o != d {
				forbidden[d] = append(forbidden[d], o)
			}
		}
		forbidden[d] = append(forbidden[d], "internal/cli")
	}
	for pkg, bad := range forbidden {
		ds := deps(t, pkg)
		for _, b := range bad {
			for d := range ds {
				if d == mod+b || strings.HasPrefix(d, mod+b+"/") {
					t.Errorf("%s must not depend on %s (found %s)", pkg, b, d)
				}
			}
		}
	}
}
