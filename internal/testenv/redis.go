package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RedisServer is a private redis-server on 127.0.0.1 (no persistence: a restart
// starts empty; no password).
type RedisServer struct {
	Addr string // 127.0.0.1:PORT
	Port int
	Dir  string // temp dir: redis.conf, redis.log, data/

	mu sync.Mutex
	p  *proc
}

var sharedRedis shared[RedisServer]

// Redis returns the binary-wide shared redis-server, started on first use and
// stopped by Main. Tests sharing it should use their own key prefixes or FlushAll.
func Redis(t testing.TB) *RedisServer {
	t.Helper()
	Need(t, "redis-server")
	needMain(t)
	return sharedRedis.get(t, "redis", startRedis,
		func(r *RedisServer) { r.stop(); removeDir(nil, r.Dir) },
		func(r *RedisServer) string { return r.Addr + " (dir " + r.Dir + ")" })
}

func startRedis() (r *RedisServer, err error) {
	dir, err := tempDir("redis")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			removeDir(nil, dir)
		}
	}()
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	r = &RedisServer{Dir: dir}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		r.Port = port
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		conf := fmt.Sprintf(`bind 127.0.0.1
port %d
protected-mode yes
daemonize no
supervised no
dir %s/data
logfile ""
loglevel notice
save ""
appendonly no
`, port, dir)
		if err := writeFile(filepath.Join(dir, "redis.conf"), conf, 0o600); err != nil {
			return nil, err
		}
		err = r.start()
		if err == nil {
			return r, nil
		}
		if attempt < 5 && addrInUse(err.Error()) {
			continue
		}
		return nil, err
	}
}

func (r *RedisServer) start() error {
	path, err := lookBin("redis-server")
	if err != nil {
		return err
	}
	p, err := startProc("redis-server", filepath.Join(r.Dir, "redis.log"), path, filepath.Join(r.Dir, "redis.conf"))
	if err != nil {
		return err
	}
	// "port open" is not "ready" (LOADING): wait for +PONG.
	if err := p.waitReady(func() error {
		if err := p.listenReady(r.Port)(); err != nil {
			return err
		}
		_, err := r.do("PING")
		return err
	}); err != nil {
		p.stop()
		return err
	}
	r.p = p
	return nil
}

// do sends one command and returns the first reply line (simple replies only).
func (r *RedisServer) do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "-") {
		return "", fmt.Errorf("redis %s: %s", args[0], line[1:])
	}
	return line, nil
}

func (r *RedisServer) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.p.stop()
}

// Stop stops redis-server (SIGTERM + wait; for outage tests). Port and dir are kept.
// The shared server is started again when the test ends if the test did not.
func (r *RedisServer) Stop(t testing.TB) {
	t.Helper()
	r.stop()
	t.Cleanup(func() { r.Start(t) })
}

// Start starts a stopped redis-server again on the same port (empty: no persistence).
// No-op when it is running.
func (r *RedisServer) Start(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != nil && !r.p.exited() {
		return
	}
	if err := r.start(); err != nil {
		t.Fatalf("testenv: restarting redis on %s: %v", r.Addr, err)
	}
}

// Freeze stops the process with SIGSTOP: connects still succeed, nothing answers
// (tests of client read timeouts). Thaw resumes it; so do Stop and the end of the test.
func (r *RedisServer) Freeze(t testing.TB) {
	t.Helper()
	r.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.p != nil && !r.p.exited() {
			_ = r.p.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
}

// Thaw resumes a frozen redis-server (SIGCONT).
func (r *RedisServer) Thaw(t testing.TB) { r.signal(t, syscall.SIGCONT) }

func (r *RedisServer) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == nil || r.p.exited() {
		t.Fatalf("testenv: redis is not running")
	}
	if err := r.p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("testenv: redis: %v", err)
	}
}

// FlushAll deletes every key.
func (r *RedisServer) FlushAll(t testing.TB) {
	t.Helper()
	if _, err := r.do("FLUSHALL"); err != nil {
		t.Fatalf("testenv: redis FLUSHALL: %v\nlog:\n%s", err, tail(filepath.Join(r.Dir, "redis.log"), 20))
	}
}

// Log returns redis-server's log.
func (r *RedisServer) Log() string {
	b, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
	return string(b)
}
