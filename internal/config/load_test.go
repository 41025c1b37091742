package config

import (
	"errors"
	"strings"
	"testing"
)

type inner struct {
	Listen  Listener `yaml:"listen"`
	Timeout Duration `yaml:"timeout"`
	Max     Size     `yaml:"max"`
	Count   int      `yaml:"count"`
}

func (i *inner) Validate() error {
	if i.Count < 0 {
		return Errorf("count", "must not be negative", "use 0 for no limit")
	}
	return nil
}

type top struct {
	Name     string           `yaml:"name"`
	A        inner            `yaml:"a"`
	List     []inner          `yaml:"list"`
	Zones    map[string]inner `yaml:"zones"`
	Embedded `yaml:",inline"`
}

type Embedded struct {
	Extra string `yaml:"extra"`
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // substrings of problems, in order
	}{
		{"ok", "name: x\na:\n  timeout: 30d\n  max: 10MB\n  listen:\n    address: unix:/tmp/s\n    mode: \"0660\"\nextra: y\n", nil},
		{"empty", "", nil},
		{"unknown key with hint", "name: x\na:\n  timout: 5s\n", []string{`t.yaml:3: a.timout: unknown key (hint: did you mean "timeout"?)`}},
		{"unknown key list", "bogus: 1\n", []string{`t.yaml:1: bogus: unknown key (hint: known keys here: a, extra, list, name, zones)`}},
		{"every problem at once", "a:\n  count: abc\n  timeout: soon\nlist:\n  - max: lots\n  - nope: 1\n", []string{
			`t.yaml:2: a.count: "abc" is not a valid int`,
			`t.yaml:3: a.timeout: invalid duration "soon"`,
			`t.yaml:5: list[0].max: invalid size "lots"`,
			`t.yaml:6: list[1].nope: unknown key`,
		}},
		{"validate with line", "name: x\nzones:\n  z1:\n    count: -1\n", []string{`t.yaml:4: zones.z1.count: must not be negative (hint: use 0 for no limit)`}},
		{"listener validate", "a:\n  listen:\n    address: nowhere\n    mode: rw\n", []string{
			`t.yaml:3: a.listen.address: "nowhere" is neither unix:/path nor host:port`,
			`t.yaml:4: a.listen.mode: "rw" is not an octal mode`,
		}},
		{"syntax error", "a: [\n", []string{"t.yaml:"}},
		{"wrong shape", "a: 5\n", []string{`t.yaml:1: a: expected a mapping of keys, got "5"`}},
		{"duplicate key", "name: a\nname: b\n", []string{"t.yaml:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c top
			err := Load("t.yaml", []byte(tt.in), &c)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("not Problems: %T", err)
			}
			if len(ps) < len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(ps[i].String(), w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, ps[i].String(), w)
				}
			}
		})
	}
}

func TestLoadKeepsDefaults(t *testing.T) {
	c := top{Name: "default", A: inner{Count: 7}}
	if err := Load("t.yaml", []byte("a:\n  timeout: 1m\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "default" || c.A.Count != 7 || c.A.Timeout.D().Minutes() != 1 {
		t.Fatalf("defaults lost: %+v", c)
	}
}

func TestParseSizeAndDuration(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "10MB": 10 << 20, "512KiB": 512 << 10, "1g": 1 << 30, "1.5K": 1536} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if d, err := ParseDuration("2w"); err != nil || d.Hours() != 336 {
		t.Errorf("ParseDuration(2w) = %v, %v", d, err)
	}
	if _, err := ParseDuration("x"); err == nil {
		t.Error("ParseDuration(x) accepted")
	}
}
