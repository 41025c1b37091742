package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The demo users are served only without a config file. With one, a static
// directory without a users file is a config error (with file:line and a
// hint) whenever a listed daemon looks users up, and a startup error for a
// daemon run alone; it never falls back to demo/demo.
func TestDemoUsersOnlyWithoutConfigFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     string // %s: data dir
		users   bool   // <data_dir>/users exists
		wantErr string
	}{
		{"no users file", "data_dir: %s\n", false, "c.yaml:1: directory.static.path: no users file: path is not set and "},
		{"no users file, static named", "data_dir: %s\ndirectory:\n  backend: static\n", false, "c.yaml:2: directory.static.path: no users file"},
		{"hint", "data_dir: %s\n", false, "(hint: set directory.static.path to a users file"},
		{"users file in the data dir", "data_dir: %s\n", true, ""},
		{"no daemon looks users up", "data_dir: %s\ndaemons: [milter]\n", false, ""},
		{"policyd without directory checks", "data_dir: %s\ndaemons: [policyd]\npolicyd: {checks: [access]}\n", false, ""},
		{"policyd with recipient checks", "data_dir: %s\ndaemons: [policyd]\npolicyd: {checks: [recipients], recipients: {enabled: true}}\n", false, "directory.static.path: no users file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			if tc.users {
				writeUsers(t, data)
			}
			path := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(path, []byte(fmt.Sprintf(tc.cfg, data)), 0o600)
			code, _, errOut := run(t, "config", "check", path)
			if tc.wantErr == "" {
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errOut)
				}
				return
			}
			if code != 1 || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("exit %d, stderr %q; want it to contain %q", code, errOut, tc.wantErr)
			}
			// serve refuses to start on it, as a config error (EX_CONFIG)
			if code, _, errOut := run(t, "-c", path, "serve"); code != 78 || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("serve: exit %d, stderr %q", code, errOut)
			}
		})
	}
	// A daemon run alone that the config's daemons list leaves out: the
	// directory refuses to open instead of serving the demo users.
	data := t.TempDir()
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf("data_dir: %s\ndaemons: [milter]\n", data)), 0o600)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a := &App{ConfigPath: path, cfg: cfg, Log: slog.New(slog.DiscardHandler)}
	defer a.Close()
	d, err := a.Directory(context.Background())
	if err == nil {
		_, authErr := d.Authenticate(context.Background(), "demo@example.com", "demo")
		t.Fatalf("directory opened with a config file and no users file (demo login: %v)", authErr)
	}
	if !strings.Contains(err.Error(), path+": directory.static.path: no users file") {
		t.Errorf("error = %v", err)
	}
	// authd alone on that file does not start.
	if code, _, errOut := run(t, "-c", path, "authd"); code == 0 || !strings.Contains(errOut, "no users file") {
		t.Errorf("authd alone: exit %d, %s", code, errOut)
	}
}

// `config check` must refuse what serve refuses or would silently change.
func TestConfigCheckRefuses(t *testing.T) {
	dir := t.TempDir()
	data := usersDataDir(t)
	noGeo := filepath.Join(dir, "nonexistent.mmdb")
	geo := filepath.Join(dir, "country.mmdb")
	os.WriteFile(geo, []byte("x"), 0o600)
	sieveDir := filepath.Join(dir, "sieve")
	os.Mkdir(sieveDir, 0o700)
	for _, tc := range []struct {
		name string
		cfg  string // after data_dir (line 1)
		want string // "" = accepted
	}{
		{"metrics.listen nonsense", "metrics:\n  listen: nonsense\n", `c.yaml:3: metrics.listen: "nonsense" is not host:port`},
		{"metrics.listen bad port", "metrics:\n  listen: 127.0.0.1:http-ish\n", `c.yaml:3: metrics.listen: port "http-ish" is not a number`},
		{"metrics.listen port range", "metrics:\n  listen: 127.0.0.1:70000\n", `c.yaml:3: metrics.listen: port "70000"`},
		{"metrics.listen empty", "metrics:\n  listen: \"\"\n", ""},
		{"metrics.listen all interfaces", "metrics:\n  listen: \":9180\"\n", ""},
		{"no daemons", "daemons: []\n", `c.yaml:2: daemons: lists no daemon`},
		{"negative grace", "shutdown_grace: -5s\n", `c.yaml:2: shutdown_grace: -5s is not a grace period`},
		{"zero grace", "shutdown_grace: 0s\n", `c.yaml:2: shutdown_grace: 0s is not a grace period`},
		{"missing GeoIP database", "policyd:\n  access:\n    enabled: true\n    geoip_database: " + noGeo + "\n", `c.yaml:5: policyd.access.geoip_database: ` + noGeo + `: no such file or directory`},
		{"GeoIP of a disabled check", "policyd:\n  checks: [greylist]\n  access:\n    enabled: true\n    geoip_database: " + noGeo + "\n", ""},
		{"GeoIP present", "policyd:\n  access:\n    enabled: true\n    geoip_database: " + geo + "\n", ""},
		{"GeoIP is a directory", "policyd:\n  access:\n    enabled: true\n    geoip_database: " + dir + "\n", "c.yaml:5: policyd.access.geoip_database: " + dir + " is a directory"},
		{"missing greylist file", "policyd:\n  greylist:\n    exempt_clients_file: " + noGeo + "\n", `c.yaml:4: policyd.greylist.exempt_clients_file: `},
		{"missing sieve_before", "lmtpd:\n  sieve:\n    before: [" + geo + ", " + noGeo + "]\n", `c.yaml:4: lmtpd.sieve.before[1]: ` + noGeo},
		{"sieve off", "lmtpd:\n  sieve:\n    enabled: false\n    after: [" + noGeo + "]\n", ""},
		{"missing rule file", "spam:\n  rule_files:\n    - " + noGeo + "\n", `c.yaml:4: spam.rule_files[0]: `},
		{"rule directory", "spam:\n  rule_files: [" + sieveDir + "]\n", ""},
		{"missing users file", "directory:\n  static:\n    path: " + noGeo + "\n", `c.yaml:4: directory.static.path: `},
		{"fractional size", "runtime:\n  memory_limit: 1.9\n", `c.yaml:3: runtime.memory_limit: invalid size "1.9": not a whole number of bytes`},
		{"unknown unit", "runtime:\n  memory_limit: 10I\n", `c.yaml:3: runtime.memory_limit: invalid size "10I": unknown unit "I"`},
		{"infinite size", "runtime:\n  memory_limit: inf\n", `c.yaml:3: runtime.memory_limit: invalid size "inf"`},
		{"NaN size", "runtime:\n  memory_limit: NaN\n", `c.yaml:3: runtime.memory_limit: invalid size "NaN"`},
		{"overflowing size", "runtime:\n  memory_limit: 9999999TB\n", `c.yaml:3: runtime.memory_limit: invalid size "9999999TB": too large`},
		{"negative size", "runtime:\n  memory_limit: -1GB\n", `c.yaml:3: runtime.memory_limit: invalid size "-1GB": must not be negative`},
		{"sizes with units", "runtime:\n  memory_limit: 1GiB\nauthd:\n  cache_size: 512KB\nlmtpd:\n  max_message_size: 10MiB\n", ""},
		{"bad cache_size has its own key and line", "authd:\n  cache_ttl: 5m\n  cache_size: inf\n", `c.yaml:4: authd.cache_size: invalid size "inf"`},
		{"negative cache_size", "authd:\n  cache_size: -5MB\n", `c.yaml:3: authd.cache_size: invalid size "-5MB": must not be negative`},
		{"comments only", "# nothing else\n", ""},
		{"second document", "---\nlog: {level: debug}\n", `c.yaml:2: only one YAML document is allowed`},
		{"negative lmtpd timeout", "lmtpd:\n  read_timeout: -5m\n", `c.yaml:3: lmtpd.read_timeout: -5m0s must not be negative`},
		{"overflowing days", "lmtpd:\n  duplicate_period: 1000000d\n", `c.yaml:3: lmtpd.duplicate_period: invalid duration "1000000d": too large`},
		{"listener port range", "authd:\n  listen:\n    address: 127.0.0.1:99999\n", `c.yaml:4: authd.listen.address: port "99999" is neither a number`},
		// Each address passes alone; two on one address stopped serve at start
		// with "bind: address already in use" although config check said OK.
		{"two daemons on one port", "authd:\n  listen: {address: 127.0.0.1:21040}\npolicyd:\n  listen:\n    address: 127.0.0.1:21040\n", `c.yaml:6: policyd.listen.address: 127.0.0.1:21040 is already taken by authd.listen.address (127.0.0.1:21040)`},
		{"daemon on the metrics port", "milter:\n  listen:\n    address: 127.0.0.1:9180\n", `c.yaml:4: milter.listen.address: 127.0.0.1:9180 is already taken by metrics.listen`},
		{"wildcard covers loopback", "milter:\n  listen:\n    address: 0.0.0.0:10040\n", `c.yaml:4: milter.listen.address: 0.0.0.0:10040 is already taken by policyd.listen.address (127.0.0.1:10040)`},
		{"one socket twice", "authd:\n  listen: {address: \"unix:" + filepath.Join(dir, "s") + "\"}\nlmtpd:\n  also_listen: {address: \"unix:" + dir + "/./s\"}\n", `c.yaml:5: lmtpd.also_listen.address: unix:` + dir + `/./s is already taken by authd.listen.address`},
		{"same port, daemon not served", "daemons: [authd]\nmilter:\n  listen:\n    address: 127.0.0.1:12345\n", ""},
		{"same port, other hosts", "milter:\n  listen:\n    address: 127.0.0.2:10040\n", ""},
		{"IPv4 wildcard, IPv6 host", "milter:\n  listen:\n    address: 0.0.0.0:10041\npolicyd:\n  listen:\n    address: \"[::1]:10041\"\n", ""},
		{"merge keys", "x-sock: &sock {mode: \"0660\"}\nauthd:\n  listen: {<<: *sock, address: \"unix:" + filepath.Join(dir, "a.sock") + "\"}\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(path, []byte("data_dir: "+data+"\n"+tc.cfg), 0o600)
			code, _, errOut := run(t, "config", "check", path)
			if tc.want == "" {
				if code != 0 {
					t.Errorf("exit %d: %s", code, errOut)
				}
				return
			}
			if code != 1 || !strings.Contains(errOut, filepath.Dir(path)+"/"+tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant %q", code, errOut, tc.want)
			}
		})
	}
}

// Problems of different kinds in one file are all reported, each with its
// line: an unknown key and a wrong type do not hide the semantic problems of
// the other sections.
func TestConfigCheckEveryKindAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(`data_dir: ""
daemons: [authd, smtpd]
log:
  level: loud
  fromat: json
metrics:
  listen: [1, 2]
shutdown_grace: soon
runtime:
  gc_percent: 0
  memory_limit: 1.5
authd:
  cache_size: 10MB
  cache_size: 20MB
`), 0o600)
	code, _, errOut := run(t, "config", "check", path)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	want := []string{
		"c.yaml:1: data_dir: must not be empty",
		"c.yaml:2: daemons[1]: unknown daemon \"smtpd\"",
		"c.yaml:4: log.level: unknown level \"loud\"",
		"c.yaml:5: log.fromat: unknown key",
		"c.yaml:7: metrics.listen: expected a string value, got a list",
		"c.yaml:8: shutdown_grace: invalid duration \"soon\"",
		"c.yaml:11: runtime.memory_limit: invalid size \"1.5\": not a whole number of bytes",
		"c.yaml:14: authd.cache_size: key given twice",
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("missing %q", w)
		}
	}
	// runtime had a bad value: its other checks would judge a default, so
	// gc_percent's problem waits for the next run.
	if n := strings.Count(strings.TrimSpace(errOut), "\n") + 1; n != len(want) {
		t.Errorf("%d problems reported, want %d:\n%s", n, len(want), errOut)
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", errOut)
	}
}
