package sieve

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// sharedDir locates ../shared relative to the module root (overridable with
// DOVETAIL_SHARED). Outside CI a missing directory skips; with CI=true it fails.
func sharedDir(t testing.TB) string {
	if d := os.Getenv("DOVETAIL_SHARED"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := wd
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			dir = ""
			break
		}
		dir = parent
	}
	if dir != "" {
		sd := filepath.Join(dir, "..", "shared")
		if st, err := os.Stat(sd); err == nil && st.IsDir() {
			return sd
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("shared directory (../shared relative to the repo root, or $DOVETAIL_SHARED) not found; required in CI")
	}
	t.Skip("shared directory ../shared not found (set DOVETAIL_SHARED); skipping Pigeonhole conformance")
	return ""
}

// waived lists test blocks that are not run, keyed "relpath/test name"
// (a "relpath/*" key waives a whole file). Every entry says why.
var waived = map[string]string{
	// Pigeonhole's examples/ folder is not shipped with the suite.
	"execute/examples.svtest/*": "needs Pigeonhole's examples/ folder (not included)",
	// extprograms needs shell fixtures and the extprograms plugin.
	"plugins/extprograms/errors.svtest/*":          "extprograms plugin (shell fixtures not included)",
	"plugins/extprograms/execute/command.svtest/*": "extprograms plugin (shell fixtures not included)",
	"plugins/extprograms/execute/errors.svtest/*":  "extprograms plugin (shell fixtures not included)",
	"plugins/extprograms/execute/execute.svtest/*": "extprograms plugin (shell fixtures not included)",
	"plugins/extprograms/filter/command.svtest/*":  "extprograms plugin (shell fixtures not included)",
	"plugins/extprograms/filter/errors.svtest/*":   "extprograms plugin (shell fixtures not included)",
	"plugins/extprograms/filter/execute.svtest/*":  "extprograms plugin (shell fixtures not included)",
	"plugins/extprograms/pipe/command.svtest/*":    "extprograms plugin (shell fixtures not included)",
	"plugins/extprograms/pipe/errors.svtest/*":     "extprograms plugin (shell fixtures not included)",
	"plugins/extprograms/pipe/execute.svtest/*":    "extprograms plugin (shell fixtures not included)",
}

// disabledReason is recorded for test blocks the suite itself never runs
// (execute.svtest of metadata wraps its servermetadata blocks in
// "if false { ... }" because Pigeonhole's testsuite cannot set server
// metadata).
const disabledReason = "disabled by the suite itself (inside 'if false')"

type dirCount struct{ pass, fail, waived int }

var (
	summaryMu sync.Mutex
	summary   = map[string]*dirCount{}
)

func record(dir string, pass, fail, waived int) {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	c := summary[dir]
	if c == nil {
		c = &dirCount{}
		summary[dir] = c
	}
	c.pass += pass
	c.fail += fail
	c.waived += waived
}

// summaryText renders the per-directory table `make conformance` prints and
// docs/sieve.md records.
func summaryText() string {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	if len(summary) == 0 {
		return ""
	}
	var dirs []string
	for d := range summary {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	var b strings.Builder
	var tot dirCount
	line := func(d string, c dirCount) {
		run := c.pass + c.fail
		pct := "    -"
		if run > 0 {
			pct = fmt.Sprintf("%5.1f", 100*float64(c.pass)/float64(run))
		}
		fmt.Fprintf(&b, "conformance  %-32s %4d %4d %4d %4d %6d  %s%%\n", d, c.pass+c.fail+c.waived, c.pass, c.fail, c.waived, run, pct)
	}
	fmt.Fprintf(&b, "conformance summary: Pigeonhole 0.5.19 test blocks per directory\n")
	fmt.Fprintf(&b, "conformance  %-32s %4s %4s %4s %4s %6s  %s\n", "directory", "all", "pass", "fail", "waiv", "run", "pass/run")
	for _, d := range dirs {
		c := *summary[d]
		tot.pass, tot.fail, tot.waived = tot.pass+c.pass, tot.fail+c.fail, tot.waived+c.waived
		line(d, c)
	}
	line("TOTAL", tot)
	return b.String()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if s := summaryText(); s != "" {
		fmt.Print(s)
	}
	os.Exit(code)
}

type tHooks struct {
	t    *testing.T
	rel  string
	dir  string
	seen map[string]int
	// lenient: failures/ files only need to run without crashing
	lenient bool
}

func (h *tHooks) Test(name string, body func() error) {
	key := h.rel + "/" + name
	sub := name
	h.seen[name]++
	if h.seen[name] > 1 {
		sub = fmt.Sprintf("%s#%d", name, h.seen[name])
	}
	h.t.Run(sub, func(t *testing.T) {
		if why, ok := waived[key]; ok {
			record(h.dir, 0, 0, 1)
			t.Skip("waived: " + why)
		}
		err := body()
		if err != nil && h.lenient {
			t.Logf("(failures/, only crashes count) %v", err)
			err = nil
		}
		if err != nil {
			record(h.dir, 0, 1, 0)
			var tf *testFailure
			if errors.As(err, &tf) {
				t.Errorf("FAILED %s: test_fail: %s", key, tf.msg)
			} else {
				t.Errorf("FAILED %s: error: %v", key, err)
			}
			return
		}
		record(h.dir, 1, 0, 0)
	})
}

// countBlocks counts the `test "name" {` blocks of a suite file with the
// lexer (so commented-out blocks are not counted).
func countBlocks(src []byte) int {
	lx := newLexer(src, &errList{}, 0)
	n := 0
	prev := token{kind: tSemicolon}
	for {
		t := lx.next()
		if t.kind == tEOF {
			return n
		}
		if t.kind == tString && prev.kind == tIdent && prev.str == "test" {
			n++
		}
		prev = t
	}
}

func TestPigeonhole(t *testing.T) {
	root := filepath.Join(sharedDir(t), "pigeonhole-tests")
	var files []string
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() && strings.HasSuffix(p, ".svtest") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		rel = filepath.ToSlash(rel)
		dir := filepath.ToSlash(filepath.Dir(rel))
		if strings.HasPrefix(dir, "extensions/") || strings.HasPrefix(dir, "plugins/") || strings.HasPrefix(dir, "deprecated/") {
			parts := strings.Split(dir, "/")
			dir = parts[0] + "/" + parts[1]
		}
		if dir == "." {
			dir = "base"
		}
		if dir == "extensions" {
			dir = "extensions/" + strings.TrimSuffix(filepath.Base(rel), ".svtest")
		}
		t.Run(rel, func(t *testing.T) {
			src, _ := os.ReadFile(f)
			nblocks := countBlocks(src)
			if why, ok := waived[rel+"/*"]; ok {
				record(dir, 0, 0, nblocks)
				t.Skip("waived: " + why)
			}
			if strings.HasPrefix(rel, "failures/") {
				// must fail (or pass) without crashing
				h := &tHooks{t: t, rel: rel, dir: dir, seen: map[string]int{}, lenient: true}
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Errorf("panic: %v", p)
						}
					}()
					_ = runSuiteFile(f, h)
				}()
				if nblocks == 0 || len(h.seen) == 0 {
					record(dir, 1, 0, 0)
				}
				return
			}
			h := &tHooks{t: t, rel: rel, dir: dir, seen: map[string]int{}}
			err := runSuiteFile(f, h)
			ran := 0
			for _, n := range h.seen {
				ran += n
			}
			switch {
			case err != nil:
				t.Errorf("%v", err)
				if ran < nblocks {
					record(dir, 0, nblocks-ran, 0)
				}
			case ran < nblocks:
				// the suite skips these blocks itself
				record(dir, 0, 0, nblocks-ran)
				t.Logf("%d test block(s) %s", nblocks-ran, disabledReason)
			}
		})
	}
}
