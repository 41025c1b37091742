package storeopen_test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/internal/config"
	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/store"
	storeopen "github.com/dovetail-mail/dovetail/store/open"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestOpenSQLiteInDataDir(t *testing.T) {
	dir := t.TempDir()
	s, err := storeopen.Open(t.Context(), store.DefaultConfig(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Incr(t.Context(), "k", 1, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err != nil {
		t.Fatalf("no state.db in the data dir: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := store.DefaultConfig()
	cfg.Backend = store.BackendMemory
	s, err := storeopen.Open(t.Context(), cfg, "", storeopen.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	s.Incr(t.Context(), "k", 1, 0)
	s.Get(t.Context(), "missing") // ErrNotFound is not an error metric
	s.Close()
	s.Get(t.Context(), "k") // closed: an error
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{} // name{op} -> count or value
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			op := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" {
					op = l.GetValue()
				}
			}
			switch {
			case m.GetHistogram() != nil:
				got[mf.GetName()+"{"+op+"}"] = float64(m.GetHistogram().GetSampleCount())
			case m.GetCounter() != nil:
				got[mf.GetName()+"{"+op+"}"] = m.GetCounter().GetValue()
			}
		}
	}
	want := map[string]float64{
		"dovetail_store_op_seconds{incr}":  1,
		"dovetail_store_op_seconds{get}":   2,
		"dovetail_store_errors_total{get}": 1, // the closed store; ErrNotFound does not count
	}
	if !maps.Equal(got, want) {
		t.Fatalf("metrics = %v, want %v", got, want)
	}
}

func TestOpenMemory(t *testing.T) {
	cfg := store.DefaultConfig()
	cfg.Backend = store.BackendMemory
	s, err := storeopen.Open(t.Context(), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestOpenRedis(t *testing.T) {
	srv := testenv.Redis(t)
	cfg := store.DefaultConfig()
	cfg.Backend = store.BackendRedis
	cfg.Redis.Addr = srv.Addr
	cfg.Redis.Prefix = "opentest:"
	s, err := storeopen.Open(t.Context(), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.Incr(t.Context(), "k", 2, 0); err != nil || n != 2 {
		t.Fatalf("Incr = %d, %v", n, err)
	}
}

// TestOpenRedisClusterSeed: addrs are Redis Cluster seeds even when there is
// one (a cluster's configuration endpoint): the client speaks cluster, which
// a plain server refuses (its calls fail), where addr talks to it directly.
// A plain client on a cluster endpoint would get MOVED for most keys.
func TestOpenRedisClusterSeed(t *testing.T) {
	srv := testenv.Redis(t)
	cfg := store.DefaultConfig()
	cfg.Backend = store.BackendRedis
	cfg.Redis.Addrs = []string{srv.Addr}
	cfg.Redis.Prefix = "clusterseed:"
	s, err := storeopen.Open(t.Context(), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Incr(t.Context(), "k", 1, 0); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a single addrs seed on a non-cluster server: Incr err = %v, want it unavailable (cluster mode)", err)
	}
	if err := config.Load("t.yaml", []byte("store:\n  redis:\n    addrs: [10.0.0.1:6379]\n    db: 1\n"), &struct {
		Store store.Config `yaml:"store"`
	}{store.DefaultConfig()}); err == nil || !strings.Contains(err.Error(), "only database 0") {
		t.Errorf("db 1 with one cluster seed: %v", err)
	}
}

// TestMetricsKeepMultiGetter: the metrics wrapper offers store.MultiGetter and
// store.ReadAheader exactly when the backend does (callers read ahead only where it saves a
// round trip), and counts the call.
func TestMetricsKeepMultiGetter(t *testing.T) {
	srv := testenv.Redis(t)
	for _, tc := range []struct {
		backend string
		batched bool
	}{{store.BackendMemory, false}, {store.BackendSQLite, false}, {store.BackendRedis, true}} {
		t.Run(tc.backend, func(t *testing.T) {
			cfg := store.DefaultConfig()
			cfg.Backend = tc.backend
			cfg.Redis.Addr = srv.Addr
			cfg.Redis.Prefix = "multitest:"
			reg := prometheus.NewRegistry()
			s, err := storeopen.Open(t.Context(), cfg, t.TempDir(), storeopen.WithRegisterer(reg))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, ok := s.(store.MultiGetter); ok != tc.batched {
				t.Fatalf("MultiGetter = %v, want %v", ok, tc.batched)
			}
			if _, ok := s.(store.ReadAheader); ok != tc.batched {
				t.Fatalf("ReadAheader = %v, want %v", ok, tc.batched)
			}
			if err := s.Set(t.Context(), "a", []byte("1"), time.Minute); err != nil {
				t.Fatal(err)
			}
			vs, err := store.GetMulti(t.Context(), s, "a", "missing")
			if err != nil || string(vs[0]) != "1" || vs[1] != nil {
				t.Fatalf("GetMulti = %q, %v", vs, err)
			}
			n, vs, err := store.WindowAddGetMulti(t.Context(), s, "w", time.Now(), time.Minute, 1, "a")
			if err != nil || n != 1 || len(vs) != 1 || string(vs[0]) != "1" {
				t.Fatalf("WindowAddGetMulti = %d, %q, %v", n, vs, err)
			}
			want := []string{"get", "windowadd"}
			if tc.batched {
				want = []string{"getmulti", "windowadd_getmulti"}
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			found := map[string]bool{}
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "op" {
							found[l.GetValue()] = true
						}
					}
				}
			}
			for _, op := range want {
				if !found[op] {
					t.Errorf("no %q operation counted", op)
				}
			}
		})
	}
}

// TestConfig loads `store:` sections through the real loader: defaults, a full
// redis section, and every validation error at its line.
func TestConfig(t *testing.T) {
	type file struct {
		Store store.Config `yaml:"store"`
	}
	tests := []struct {
		name, yaml string
		errs       []string // substrings, each expected in the error
	}{
		{"empty", "", nil},
		{"sqlite path", "store:\n  backend: sqlite\n  path: /var/lib/x/state.db\n", nil},
		{"redis", "store:\n  backend: redis\n  redis:\n    addr: 127.0.0.1:6379\n    password: s3cret\n    db: 2\n    read_timeout: 150ms\n", nil},
		{"cluster", "store:\n  backend: redis\n  redis:\n    addrs: [10.0.0.1:6379, 10.0.0.2:6379]\n", nil},
		{"unknown backend", "store:\n  backend: mysql\n", []string{":2:", "unknown store backend \"mysql\""}},
		{"redis without addr", "store:\n  backend: redis\n", []string{"needs redis.addr"}},
		{"bad addr", "store:\n  redis:\n    addr: localhost\n", []string{":3:", "invalid address"}},
		{"both addrs", "store:\n  redis:\n    addr: a:1\n    addrs: [b:1]\n", []string{"not both"}},
		{"bad db", "store:\n  redis:\n    db: 16\n", []string{":3:", "0..15"}},
		{"negative timeout", "store:\n  redis:\n    read_timeout: -1s\n", []string{"read_timeout"}},
		{"short sweep", "store:\n  sweep_interval: 10ms\n", []string{"at least 1s"}},
		{"unknown key", "store:\n  redis:\n    adress: a:1\n", []string{"unknown key"}},
		{"write-through", "store:\n  write_behind: 0s\n", nil},
		{"long write-behind", "store:\n  write_behind: 1m\n", []string{":2:", "write_behind"}},
		{"negative hot keys", "store:\n  hot_keys: -1\n", []string{":2:", "hot_keys"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := file{Store: store.DefaultConfig()}
			err := config.Load("test.yaml", []byte(tt.yaml), &f)
			if len(tt.errs) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.errs)
			}
			for _, want := range tt.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestSecretHidden(t *testing.T) {
	cfg := store.DefaultConfig()
	cfg.Redis.Password = "s3cret"
	var b strings.Builder
	for _, s := range []string{cfg.Redis.Password.String(), cfg.Redis.Password.GoString(), cfg.Redis.Password.LogValue().String()} {
		b.WriteString(s)
	}
	if strings.Contains(b.String(), "s3cret") {
		t.Fatalf("secret leaked: %s", b.String())
	}
	if cfg.Redis.Password.Reveal() != "s3cret" {
		t.Fatal("Reveal lost the secret")
	}
}
