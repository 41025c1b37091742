// Package rawconn is the policy load generator's client socket: a blocking file
// descriptor read and written with plain system calls, which Go's netpoller
// never sees. Each connection's goroutine locks itself to its OS thread and
// Reserve gives every such thread a P of its own, so a request costs the client
// one write, one read and one wake-up. Through the netpoller it cost ~27 µs of
// CPU per request on a 2-vCPU VM (poller, futex hand-offs, sysmon wake-ups),
// taken from the CPUs the daemon under test runs on; and the netpoller sleeps
// in whole milliseconds, where SleepUntil (clock_nanosleep) keeps a paced
// schedule to the microsecond.
package rawconn

import (
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Conn is a connected blocking socket. It is not safe for concurrent use.
type Conn struct{ fd int }

// Dial connects to addr: network "tcp" (ip:port, with TCP_NODELAY) or "unix"
// (a socket path).
func Dial(network, addr string) (*Conn, error) {
	var fam int
	var sa syscall.Sockaddr
	switch network {
	case "unix":
		fam, sa = syscall.AF_UNIX, &syscall.SockaddrUnix{Name: addr}
	case "tcp":
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, fmt.Errorf("%q: want ip:port: %w", addr, err)
		}
		fam, sa = syscall.AF_INET, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
		if ap.Addr().Is6() {
			fam, sa = syscall.AF_INET6, &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
		}
	default:
		return nil, fmt.Errorf("network %q: want tcp or unix", network)
	}
	fd, err := syscall.Socket(fam, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if network == "tcp" {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
			syscall.Close(fd)
			return nil, err
		}
	}
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("connect %s %s: %w", network, addr, err)
	}
	return &Conn{fd: fd}, nil
}

// Read reads what is there, blocking until something is; io.EOF at the end.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(c.fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Write writes all of p.
func (c *Conn) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := syscall.Write(c.fd, p[done:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return syscall.Close(c.fd) }

// Reserve sets GOMAXPROCS so that n goroutines blocked in system calls on
// locked threads each keep a P and a spare one is left for the rest: leaving a
// system call then never waits for a P.
func Reserve(n int) { runtime.GOMAXPROCS(n + 1) }

// Mono is CLOCK_MONOTONIC in ns, the clock SleepUntil sleeps on.
func Mono() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// SleepUntil sleeps until CLOCK_MONOTONIC reaches t (hrtimer precision).
func SleepUntil(t int64) {
	ts := unix.NsecToTimespec(t)
	for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil) == unix.EINTR {
	}
}
