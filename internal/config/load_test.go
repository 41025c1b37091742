package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
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
		{"duplicate key", "name: a\nname: b\n", []string{"t.yaml:2: name: key given twice"}},
		{"comments only", "# nothing set yet\n\n# still nothing\n", nil},
		{"merge key from an x- anchor", "x-common: &c\n  count: 3\n  timeout: 5s\na:\n  <<: *c\n  count: 4\nlist:\n  - <<: *c\n", nil},
		{"merge of a list of anchors", "x-a: &a {count: 1}\nx-b: &b {max: 1KB}\na:\n  <<: [*a, *b]\n", nil},
		{"x- only at the top", "a:\n  x-note: 1\n", []string{`t.yaml:2: a.x-note: unknown key`}},
		{"merged value checked", "x-c: &c\n  timeout: soon\na:\n  <<: *c\n", []string{`t.yaml:2: a.timeout: invalid duration "soon"`}},
		{"merge of a scalar", "a:\n  <<: 5\n", []string{`t.yaml:2: a: <<: merges a mapping or a list of mappings`}},
		{"second document", "name: a\n---\nname: b\n", []string{`t.yaml:2: only one YAML document is allowed`}},
		{"broken second document", "name: a\n---\nname: [\n", []string{`t.yaml:3: only one YAML document is allowed`}},
		{"trailing document marker", "name: a\n---\n", nil},
		// Problems of every kind in one file: each is reported with its line, and
		// semantic checks run for the sections that decoded (zones) but not for
		// one holding a value that did not (a: its count would be judged on the
		// default).
		{"every kind at once", "name: [x]\nbogus: 1\na:\n  timeout: soon\n  count: -1\nzones:\n  z1:\n    count: -1\nextra: y\nextra: z\n", []string{
			`t.yaml:1: name: expected a string value, got a list`,
			`t.yaml:2: bogus: unknown key`,
			`t.yaml:4: a.timeout: invalid duration "soon"`,
			`t.yaml:8: zones.z1.count: must not be negative`,
			`t.yaml:10: extra: key given twice`,
		}},
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
			if len(ps) != len(tt.want) {
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

// Merged keys are decoded like keys written in place; a key written in place wins.
func TestLoadMergeKeys(t *testing.T) {
	var c top
	in := "x-base: &base\n  count: 3\n  timeout: 5s\na:\n  <<: *base\n  count: 4\nlist:\n  - <<: *base\n  - count: 1\n"
	if err := Load("t.yaml", []byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if c.A.Count != 4 || c.A.Timeout.D().Seconds() != 5 || len(c.List) != 2 || c.List[0].Count != 3 || c.List[1].Count != 1 {
		t.Fatalf("decoded %+v", c)
	}
}

// A bad value in one section must not stop the sections after it from being
// decoded (and so validated).
func TestLoadDecodesPastABadSection(t *testing.T) {
	var c top
	err := Load("t.yaml", []byte("a:\n  max: lots\nzones:\n  z1:\n    count: 5\nextra: y\n"), &c)
	if err == nil {
		t.Fatal("no error")
	}
	if c.Zones["z1"].Count != 5 || c.Extra != "y" {
		t.Errorf("sections after the bad one not decoded: %+v", c)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"4096", 4096, ""},
		{"0", 0, ""},
		{"10B", 10, ""},
		{"512KB", 512 << 10, ""},
		{"512KiB", 512 << 10, ""},
		{"512 kib", 512 << 10, ""},
		{"10MB", 10 << 20, ""},
		{"10MiB", 10 << 20, ""},
		{"1g", 1 << 30, ""},
		{"1GiB", 1 << 30, ""},
		{"2TB", 2 << 40, ""},
		{"1.5K", 1536, ""},
		{"1.9", 0, `invalid size "1.9": not a whole number of bytes`},
		{"0.3KB", 0, `invalid size "0.3KB": not a whole number of bytes`},
		{"10I", 0, `invalid size "10I": unknown unit "I"`},
		{"10IB", 0, `invalid size "10IB": unknown unit "IB"`},
		{"10XB", 0, `invalid size "10XB": unknown unit "XB"`},
		{"inf", 0, `invalid size "inf" (use e.g.`},
		{"NaN", 0, `invalid size "NaN" (use e.g.`},
		{"1e3", 0, `invalid size "1e3": unknown unit "e3"`},
		{"-1", 0, `invalid size "-1": must not be negative`},
		{"-5MB", 0, `invalid size "-5MB": must not be negative`},
		{"99999999999999999999", 0, `invalid size "99999999999999999999": too large`},
		{"8388608TB", 0, `invalid size "8388608TB": too large`},
		{"1.2.3", 0, `invalid size "1.2.3" (use e.g.`},
		{"", 0, `invalid size "" (use e.g.`},
	} {
		got, err := ParseSize(tc.in)
		switch {
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
			t.Errorf("ParseSize(%q) = %d, %v; want error %q", tc.in, got, err, tc.wantErr)
		}
	}
}

// The day and week forms overflow like any other duration: a value past
// time.Duration's ~292 years, or NaN/Inf, must be an error, not a wrapped
// negative (or, for NaN, arbitrary) duration that a later check misreports or
// a daemon uses.
func TestParseDurationDaysAndWeeks(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"30d", 30 * 24 * time.Hour, ""},
		{"1.5d", 36 * time.Hour, ""},
		{"2w", 14 * 24 * time.Hour, ""},
		{"-1d", -24 * time.Hour, ""}, // as time.ParseDuration("-24h"); sections judge the sign
		{"106751d", 106751 * 24 * time.Hour, ""},
		{"106752d", 0, `invalid duration "106752d": too large`},
		{"1000000d", 0, `invalid duration "1000000d": too large`},
		{"100000w", 0, `invalid duration "100000w": too large`},
		{"nand", 0, `invalid duration "nand"`},
		{"infd", 0, `invalid duration "infd"`},
		{"1e3d", 0, `invalid duration "1e3d"`},
		{"0x10d", 0, `invalid duration "0x10d"`},
		{"d", 0, `invalid duration "d"`},
	} {
		got, err := ParseDuration(tc.in)
		switch {
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
			t.Errorf("ParseDuration(%q) = %v, %v; want error %q", tc.in, got, err, tc.wantErr)
		}
	}
}

// A TCP listener whose port net.Listen cannot use must fail `config check`,
// not pass it and stop `serve` at the next restart.
func TestListenerValidateTCP(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		wantErr string
	}{
		{"127.0.0.1:10024", ""},
		{"tcp:127.0.0.1:10024", ""},
		{"[::1]:24", ""},
		{":10040", ""},
		{"127.0.0.1:0", ""},
		{"unix:/var/spool/postfix/private/dovetail-lmtp", ""},
		{"", ""},
		{"127.0.0.1:99999", `address: port "99999" is neither a number from 0 to 65535 nor a service name`},
		{"127.0.0.1:-1", `address: port "-1" is neither a number from 0 to 65535 nor a service name`},
		{"127.0.0.1:lmtpx", `address: port "lmtpx" is neither a number from 0 to 65535 nor a service name`},
		{"::1:24", `address: "::1:24" is neither unix:/path nor host:port`},
		{"nowhere", `address: "nowhere" is neither unix:/path nor host:port`},
	} {
		err := Listener{Address: tc.addr}.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.addr, err)
		case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
			t.Errorf("%q: error %v, want %q", tc.addr, err, tc.wantErr)
		}
	}
}

// A unix socket path too long for a socket address (sun_path: 108 bytes on
// Linux, the terminating NUL included) must fail `config check`: it passed,
// and `serve` then stopped at start with "bind: invalid argument".
func TestListenerValidateUnixPathLength(t *testing.T) {
	dir := "/var/spool/postfix/private/"
	longest := dir + strings.Repeat("a", 107-len(dir))
	if err := (Listener{Address: "unix:" + longest}).Validate(); err != nil {
		t.Errorf("a path of 107 bytes: %v", err)
	}
	err := Listener{Address: "unix:" + longest + "a"}.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "address: unix socket path is 108 bytes long, the most is 107") {
		t.Errorf("a path of 108 bytes: error %v", err)
	}
}

// No setting takes a negative duration (a read timeout of -5m would fail
// every read at once), so the loader refuses one wherever a section's own
// checks leave it out, once, at its line; a section that reports the field
// itself keeps its message alone.
func TestLoadNegativeDuration(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"unchecked field", "a:\n  timeout: -5m\n", []string{`t.yaml:2: a.timeout: -5m0s must not be negative`}},
		{"in a list and a map", "list:\n  - timeout: -1d\nzones:\n  z1:\n    timeout: -1s\n", []string{
			`t.yaml:2: list[0].timeout: -24h0m0s must not be negative`,
			`t.yaml:5: zones.z1.timeout: -1s must not be negative`,
		}},
		{"reported by the section itself", "checked:\n  wait: -1s\n", []string{`t.yaml:2: checked.wait: my own message`}},
		{"zero is fine", "a:\n  timeout: 0s\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c struct {
				Top     top         `yaml:",inline"`
				Checked selfChecked `yaml:"checked"`
			}
			err := Load("t.yaml", []byte(tc.in), &c)
			var ps Problems
			if err != nil && !errors.As(err, &ps) {
				t.Fatalf("not Problems: %v", err)
			}
			if len(ps) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(ps[i].String(), w) {
					t.Errorf("problem %d = %q, want it to start with %q", i, ps[i].String(), w)
				}
			}
		})
	}
}

type selfChecked struct {
	Wait Duration `yaml:"wait"`
}

func (s *selfChecked) Validate() error {
	if s.Wait < 0 {
		return Errorf("wait", "my own message", "")
	}
	return nil
}

// Merge keys that refer to the same anchors again and again (the "billion
// laughs" shape: ten references per level, nine levels, in 600 bytes) are
// expanded once per anchor, not once per path to it: the walk took minutes
// and gigabytes for a file `config check` should answer at once.
func TestLoadRepeatedMergesAreLinear(t *testing.T) {
	var b strings.Builder
	b.WriteString("x-l0: &l0 {extra: v}\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "x-l%d: &l%d\n  <<: [%s]\n", i, i, aliases(fmt.Sprintf("l%d", i-1), 10))
	}
	b.WriteString("<<: *l9\nname: n\n")
	var got top
	if err := loadWithin(t, b.String(), &got, "10^9 merge paths to one anchor"); err != nil {
		t.Fatal(err)
	}
	if got.Extra != "v" || got.Name != "n" {
		t.Errorf("got extra=%q name=%q, want v and n", got.Extra, got.Name)
	}
}

// Plain aliases fanned out over nested lists (forty references per level,
// four levels: 2.5 million paths from a few hundred bytes) are walked once
// per anchor and type, not once per path: the walk expanded every path
// before yaml.v3's own decoder refused the file as "excessive aliasing" — a
// 24 KB file kept `config check` (and a SIGHUP reload of the running daemons)
// busy for a minute and a half in 6.5 GB.
func TestLoadFannedOutAliasesAreLinear(t *testing.T) {
	type deep struct {
		L [][][][]inner `yaml:"l"`
	}
	var b strings.Builder
	b.WriteString("x-a0: &a0 {count: 1}\n")
	for i := 1; i <= 4; i++ {
		fmt.Fprintf(&b, "x-a%d: &a%d [%s]\n", i, i, aliases(fmt.Sprintf("a%d", i-1), 40))
	}
	b.WriteString("l: *a4\n")
	var got deep
	if err := loadWithin(t, b.String(), &got, "2.5 million alias paths to one anchor"); err == nil || !strings.Contains(err.Error(), "excessive aliasing") {
		t.Fatalf("Load = %v, want yaml's excessive aliasing error", err)
	}
}

// aliases is n aliases of anchor, as a flow sequence's items.
func aliases(anchor string, n int) string {
	return strings.TrimSuffix(strings.Repeat("*"+anchor+", ", n), ", ")
}

// loadWithin loads src into v, failing the test if that takes more than 5 s
// (what is a path blow-up for the walk, never a slow machine).
func loadWithin(t *testing.T, src string, v any, what string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- Load("t.yaml", []byte(src), v) }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("Load of %s did not finish in 5s", what)
		return nil
	}
}

// An anchored block used in two places is still checked in each: a problem
// in it is reported (at the anchor's line) and both uses decode.
func TestLoadAliasUsedTwice(t *testing.T) {
	var got top
	err := Load("t.yaml", []byte("x-i: &i {count: 2, timeout: 5s}\na: *i\nlist: [*i, *i]\n"), &got)
	if err != nil {
		t.Fatal(err)
	}
	if got.A.Count != 2 || len(got.List) != 2 || got.List[1].Timeout.D() != 5*time.Second {
		t.Errorf("got %+v", got)
	}
	err = Load("t.yaml", []byte("x-i: &i {count: 2, timout: 5s}\na: *i\nlist: [*i]\n"), &got)
	if err == nil || !strings.Contains(err.Error(), "t.yaml:1: a.timout: unknown key") {
		t.Errorf("Load = %v, want the unknown key at the anchor's line", err)
	}
}

// A bad anchored value is reported once, at the anchor, however many
// sections alias it — and each of them is still known to hold it: the
// decoder's own error for the second section (and its checks judging the
// default left in place) must not come on top.
func TestLoadBadAliasInTwoSections(t *testing.T) {
	var got top
	err := Load("t.yaml", []byte("x-d: &d 5q\na: {timeout: *d}\nlist: [{timeout: *d, count: -1}]\n"), &got)
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("Load = %v, want problems", err)
	}
	if len(probs) != 1 || probs[0].Line != 1 || !strings.Contains(probs[0].Msg, "a.timeout") {
		t.Errorf("got %d problems:\n%v\nwant one, a.timeout at line 1", len(probs), err)
	}
}
