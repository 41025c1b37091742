package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MailUID and MailGID are Debian's "mail" user and group. Dovecot refuses to run mail
// processes as root, so every maildir the harness creates belongs to them
// (with first_valid_uid = 1 in the Dovecot config).
const (
	MailUID = 8
	MailGID = 8
)

// Env vars understood by the harness.
const (
	envCI     = "CI"              // "true": skips become failures
	envKeep   = "DOVETAIL_KEEP"   // "1": keep temp dirs (logs, configs, queues)
	envShared = "DOVETAIL_SHARED" // path of the shared material (default ../shared)
)

// stopTimeout is how long a daemon gets after SIGTERM before it is SIGKILLed.
const stopTimeout = 5 * time.Second

// readyTimeout bounds every readiness poll.
const readyTimeout = 15 * time.Second

var (
	mainMu      sync.Mutex
	mainRunning bool
	atExit      []func() // run in reverse order by Main after m.Run
)

// Main runs the tests and then stops every server this binary started. Use it in
// TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	mainMu.Lock()
	mainRunning = true
	mainMu.Unlock()
	sweepStale()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "testenv: %v: stopping every server this binary started\n", sig)
		emergencyStop()
		os.Exit(2)
	}()
	code := m.Run()
	shutdown()
	pending.Wait()
	os.Exit(code)
}

// Everything running or on disk right now, for emergencyStop.
var (
	liveMu    sync.Mutex
	liveProcs = map[*proc]bool{}
	liveDirs  = map[string]bool{}
)

// emergencyStop stops every live daemon and removes every live dir (on a signal).
func emergencyStop() {
	liveMu.Lock()
	procs := make([]*proc, 0, len(liveProcs))
	for p := range liveProcs {
		procs = append(procs, p)
	}
	dirs := make([]string, 0, len(liveDirs))
	for d := range liveDirs {
		dirs = append(dirs, d)
	}
	liveMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
	for _, d := range dirs {
		removeDir(nil, d)
	}
}

// sweepStale removes harness dirs (/tmp/dt-<kind>-<pid>.*) whose test binary is gone
// (killed by a timeout or SIGKILL; its daemons died with it via Pdeathsig), unless
// they were kept on purpose (DOVETAIL_KEEP=1 leaves a KEPT marker).
func sweepStale() {
	if keep() {
		return
	}
	matches, _ := filepath.Glob("/tmp/dt-*-*.*")
	for _, d := range matches {
		base := filepath.Base(d)
		rest := strings.TrimPrefix(base, "dt-")
		dash, dot := strings.IndexByte(rest, '-'), strings.IndexByte(rest, '.')
		if dash < 0 || dot < dash {
			continue
		}
		pid, err := strconv.Atoi(rest[dash+1 : dot])
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // still running
		}
		if _, err := os.Stat(filepath.Join(d, "KEPT")); err == nil {
			continue
		}
		os.RemoveAll(d)
	}
}

// pending counts background stops (see stopLater).
var pending sync.WaitGroup

// stopLater runs fn (stop a server, remove its dir) in the background when Main is
// running, and waits for it at the end of Main; otherwise it runs fn now. Dovecot's
// master sleeps 1 s in its shutdown; tests need not wait for that.
func stopLater(fn func()) {
	mainMu.Lock()
	ok := mainRunning
	mainMu.Unlock()
	if !ok {
		fn()
		return
	}
	pending.Add(1)
	go func() {
		defer pending.Done()
		fn()
	}()
}

// shutdown runs the registered exit hooks (shared servers), newest first.
func shutdown() {
	mainMu.Lock()
	fns := atExit
	atExit = nil
	mainMu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// needMain fails the test when Main is not running: shared servers are stopped by
// Main; without it they would only die with the test binary (Pdeathsig) and leave
// their temp dirs behind.
func needMain(t testing.TB) {
	t.Helper()
	mainMu.Lock()
	ok := mainRunning
	mainMu.Unlock()
	if !ok {
		t.Fatalf("testenv: shared servers need TestMain in this package: func TestMain(m *testing.M) { testenv.Main(m) }")
	}
}

// registerExit registers fn to run when Main returns.
func registerExit(fn func()) {
	mainMu.Lock()
	defer mainMu.Unlock()
	atExit = append(atExit, fn)
}

// CI reports whether CI=true, in which case a missing prerequisite fails instead of skipping.
func CI() bool {
	v := strings.ToLower(os.Getenv(envCI))
	return v == "true" || v == "1" || v == "yes"
}

func keep() bool { return os.Getenv(envKeep) == "1" }

// SkipOrFail skips the test, or fails it when CI=true (a prerequisite the
// box lacks; CI always has it).
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("testenv: %s (CI=true: not skipping)", msg)
	}
	t.Skipf("testenv: %s (set CI=true to make this a failure; `make test` installs the packages)", msg)
}

// binDirs are searched for binaries in addition to $PATH (root's PATH may lack sbin
// under some runners, and Postfix's master lives outside PATH).
var binDirs = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/lib/postfix/sbin", "/usr/lib/dovecot"}

// lookBin finds a binary in $PATH or in the usual system directories. Absolute
// paths only have to exist (plugins such as .so files are not executable).
func lookBin(name string) (string, error) {
	if filepath.IsAbs(name) {
		if st, err := os.Stat(name); err == nil && !st.IsDir() {
			return name, nil
		}
		return "", fmt.Errorf("%s not found", name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range binDirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in $PATH or %s", name, strings.Join(binDirs, ", "))
}

// bin returns the path of a binary that Need has already checked.
func bin(t testing.TB, name string) string {
	t.Helper()
	p, err := lookBin(name)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

// Need skips the test (or fails it when CI=true) if the process is not root or one
// of the binaries is missing (names are looked up in $PATH and the sbin/libexec dirs;
// absolute paths, e.g. of plugins, only have to exist). Every Start*/shared getter calls it.
func Need(t testing.TB, binaries ...string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		SkipOrFail(t, "real-server tests need Linux (GOOS=%s)", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		SkipOrFail(t, "real-server tests need root (euid %d)", os.Geteuid())
	}
	var missing []string
	for _, b := range binaries {
		if _, err := lookBin(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		SkipOrFail(t, "missing binaries: %s (run scripts/install-deps.sh)", strings.Join(missing, " "))
	}
}

// SharedDir returns the path of the shared material: $DOVETAIL_SHARED, else the
// "shared" directory beside the repository root. It skips when absent, unless
// CI=true (then it fails).
func SharedDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(envShared); d != "" {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
		SkipOrFail(t, "$%s=%s is not a directory", envShared, d)
	}
	root, err := repoRoot()
	if err != nil {
		SkipOrFail(t, "cannot locate the repository root: %v", err)
	}
	d := filepath.Join(filepath.Dir(root), "shared")
	if st, err := os.Stat(d); err != nil || !st.IsDir() {
		SkipOrFail(t, "shared material not found at %s (set $%s)", d, envShared)
	}
	return d
}

// repoRoot walks up from the working directory (a package dir under go test) to go.mod.
func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("no go.mod above the working directory")
		}
		d = p
	}
}

// ---------------------------------------------------------------- ports

const (
	portMin = 20000 // below the kernel's ephemeral range (32768-60999), pitfall 12
	portMax = 32767
)

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

// FreePort returns a free TCP port on 127.0.0.1 below 32768: ports in the ephemeral
// range can be held by any client socket's local end, which makes a daemon's bind()
// fail with EADDRINUSE although a probe saw the port free. The port is never handed
// out twice by this process. A daemon can still lose a race for it to another
// process: the Start functions retry with new ports when the bind fails.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

// FreeAddr is FreePort as a "127.0.0.1:port" listen address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// forcePorts, when non-empty, is handed out first by freePort without any check
// (tests of the EADDRINUSE retry).
var forcePorts []int

func freePort() (int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	if len(forcePorts) > 0 {
		p := forcePorts[0]
		forcePorts = forcePorts[1:]
		return p, nil
	}
	for range 200 {
		p := portMin + rand.IntN(portMax-portMin+1)
		if portsUsed[p] {
			continue
		}
		if !portFree(p) {
			continue
		}
		portsUsed[p] = true
		return p, nil
	}
	return 0, errors.New("no free port found in 20000-32767")
}

// portFree reports whether p can be bound on 127.0.0.1 and nothing listens on it.
func portFree(p int) bool {
	if listening(p) {
		return false
	}
	l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// listenInodes returns the socket inodes listening on TCP port p (any address),
// from /proc/net/tcp{,6}. Empty: nobody listens.
func listenInodes(p int) map[string]bool {
	want := fmt.Sprintf(":%04X", p)
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 9 && fields[3] == "0A" && strings.HasSuffix(fields[1], want) {
				inodes[fields[9]] = true
			}
		}
		fh.Close()
	}
	return inodes
}

// listening reports whether some socket listens on TCP port p.
func listening(p int) bool { return len(listenInodes(p)) > 0 }

// listeningBy reports whether process pid itself holds a socket listening on port p.
// A side-effect-free readiness probe (connecting to Postfix's smtpd port would spawn
// an smtpd that talks to the milter and SASL server) that is not fooled by another
// process holding the port.
func listeningBy(pid, p int) bool {
	inodes := listenInodes(p)
	if len(inodes) == 0 {
		return false
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		if inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] {
			return true
		}
	}
	return false
}

// addrInUse reports whether a daemon log shows a failed bind.
func addrInUse(log string) bool {
	return strings.Contains(log, "Address already in use") || strings.Contains(log, "errno=98") ||
		strings.Contains(log, "EADDRINUSE")
}

// ---------------------------------------------------------------- temp dirs

// tempDir creates a short, world-traversable (0755) directory under /tmp: unix and
// ldapi socket paths must stay below 108 bytes, and daemons that drop privileges
// (postfix, dovecot, mail) must be able to traverse it. $TMPDIR is deliberately not
// used: it may be long or inside a directory others cannot traverse.
func tempDir(prefix string) (string, error) {
	d, err := os.MkdirTemp("/tmp", fmt.Sprintf("dt-%s-%d.", prefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	if err := os.Chmod(d, 0o755); err != nil {
		os.RemoveAll(d)
		return "", err
	}
	liveMu.Lock()
	liveDirs[d] = true
	liveMu.Unlock()
	return d, nil
}

// removeDir removes a harness temp dir unless DOVETAIL_KEEP=1.
func removeDir(tb testing.TB, d string) {
	if d == "" {
		return
	}
	liveMu.Lock()
	delete(liveDirs, d)
	liveMu.Unlock()
	if keep() {
		_ = writeFile(filepath.Join(d, "KEPT"), "DOVETAIL_KEEP=1\n", 0o644)
		if tb != nil {
			tb.Logf("testenv: DOVETAIL_KEEP=1: kept %s", d)
		} else {
			fmt.Fprintf(os.Stderr, "testenv: DOVETAIL_KEEP=1: kept %s\n", d)
		}
		return
	}
	os.RemoveAll(d)
}

// tail returns the last n lines of a file (for error messages).
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// mkdirOwned creates dir (and parents) and gives dir itself the owner and mode.
func mkdirOwned(dir string, uid, gid int, mode os.FileMode) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// writeFile writes a file with a mode.
func writeFile(path, content string, mode os.FileMode) error {
	return os.WriteFile(path, []byte(content), mode)
}

// ---------------------------------------------------------------- processes

// spawnReq asks the spawner goroutine to start a command.
type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

// startCmd starts cmd from one dedicated, locked OS thread that never exits. Daemons
// get Pdeathsig=SIGTERM so they die with the test binary even when it is killed by a
// timeout; Pdeathsig fires when the *thread* that forked exits, which for an
// ordinary goroutine can happen at any time, hence the dedicated thread.
func startCmd(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range spawnCh {
				r.done <- r.cmd.Start()
			}
		}()
	})
	setPdeathsig(cmd)
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnCh <- r
	return <-r.done
}

// proc is a daemon running in the foreground as our child.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string        // log file to quote in errors
	done chan struct{} // closed when Wait returned (no zombie left)
	err  error         // Wait's result, valid after done
}

// startProc starts a foreground daemon with stdout/stderr appended to logPath.
func startProc(name, logPath string, path string, args ...string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.Dir = "/"
	if err := startCmd(cmd); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	lf.Close() // the child has its own copy
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	stopWatchdog := watchdog(cmd.Process.Pid)
	liveMu.Lock()
	liveProcs[p] = true
	liveMu.Unlock()
	go func() {
		p.err = cmd.Wait()
		stopWatchdog()
		liveMu.Lock()
		delete(liveProcs, p)
		liveMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// watchdog starts `sh -c 'read _; kill -TERM PID'` reading from a pipe only this
// process holds open: when the test binary dies (even by SIGKILL), the pipe closes
// and the daemon gets SIGTERM. Pdeathsig alone is not enough: the kernel clears it
// when a process changes its credentials, which Postfix's master does (set_eugid).
// The returned func stops the watchdog (call it once the daemon has been reaped).
func watchdog(pid int) (stop func()) {
	r, w, err := os.Pipe()
	if err != nil {
		return func() {}
	}
	wd := exec.Command("/bin/sh", "-c", fmt.Sprintf("read _; kill -TERM %d 2>/dev/null", pid))
	wd.Stdin = r
	wd.Dir = "/"
	wd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // not hit by a terminal's ^C
	err = wd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return func() {}
	}
	return func() {
		_ = wd.Process.Kill() // first: closing w would make it fire
		_ = wd.Wait()
		w.Close()
	}
}

// exited reports whether the process has exited (and was reaped).
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM (and SIGCONT, in case a test froze it), waits, and SIGKILLs after
// stopTimeout. Safe to call twice.
func (p *proc) stop() {
	if p == nil || p.exited() {
		return
	}

	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-p.done:
		return
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// waitReady polls ready every 20 ms until it returns nil, the process exits, or
// readyTimeout passes. Errors carry the daemon's log tail.
func (p *proc) waitReady(ready func() error) error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for {
		exited := p.exited() // before ready(): a dead daemon's port may be someone else's
		if !exited {
			if last = ready(); last == nil {
				return nil
			}
		}
		if exited || p.exited() {
			return fmt.Errorf("%s exited (%v) before it was ready; log %s:\n%s", p.name, p.err, p.log, tail(p.log, 30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s (%v); log %s:\n%s", p.name, readyTimeout, last, p.log, tail(p.log, 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runCmd runs a short helper command and returns its combined output.
func runCmd(path string, args ...string) (string, error) {
	cmd := exec.Command(path, args...)
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// listenReady returns a readiness check: the process itself listens on every port.
func (p *proc) listenReady(ports ...int) func() error {
	return func() error {
		for _, port := range ports {
			if !listeningBy(p.cmd.Process.Pid, port) {
				return fmt.Errorf("%s does not listen on port %d yet", p.name, port)
			}
		}
		return nil
	}
}

// Gauge returns the value of the gauge name (its first series) in g, failing
// the test when it is not registered.
func Gauge(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not registered", name)
	return 0
}
