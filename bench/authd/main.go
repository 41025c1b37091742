// Command authd-bench is a Dovecot auth-client protocol load generator: it speaks
// to an auth socket exactly like Postfix (smtpd_sasl_type = dovecot) and like the
// peer's auth_bench.py (../shared/peers/auth), so dovetail authd and Dovecot's
// own auth service are measured with the same client.
//
//	authd-bench -socket /path/auth-client -n 60000 -c 8 -mode hit
//	authd-bench -addr 127.0.0.1:12345 -n 15000 -c 1 -mode miss -users 1000
//
// Each connection has one request in flight (the next AUTH goes out after the
// reply), connections start together after a warm-up login each. hit: every
// request is user u0000; miss: request i uses user u(i mod users). Password of
// uNNNN is secret-NNNN (the peer's user set). Prints one JSON line.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type conn struct {
	c  net.Conn
	r  *bufio.Reader
	id int
	b  []byte
}

func dial(network, addr string) (*conn, error) {
	nc, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	c := &conn{c: nc, r: bufio.NewReaderSize(nc, 64<<10)}
	if _, err := fmt.Fprintf(nc, "VERSION\t1\t2\nCPID\t%d\n", os.Getpid()); err != nil {
		return nil, err
	}
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("handshake: %w", err)
		}
		if l == "DONE\n" {
			return c, nil
		}
	}
}

// auth sends one AUTH PLAIN and returns the reply line.
func (c *conn) auth(user, pw string) (string, error) { return c.authExtra(user, pw, "") }

// authExtra is auth with extra parameters (e.g. "no-penalty\t") before resp=.
func (c *conn) authExtra(user, pw, extra string) (string, error) {
	c.id++
	c.b = c.b[:0]
	c.b = append(c.b, "AUTH\t"...)
	c.b = strconv.AppendInt(c.b, int64(c.id), 10)
	c.b = append(c.b, "\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tsecured\t"...)
	c.b = append(c.b, extra...)
	c.b = append(c.b, "resp="...)
	c.b = base64.StdEncoding.AppendEncode(c.b, []byte("\x00"+user+"\x00"+pw))
	c.b = append(c.b, '\n')
	if _, err := c.c.Write(c.b); err != nil {
		return "", err
	}
	l, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	f := strings.SplitN(l, "\t", 3)
	if len(f) < 2 || f[1] != strconv.Itoa(c.id) {
		return l, fmt.Errorf("unexpected reply %q", l)
	}
	return l, nil
}

func user(i int) (string, string) { return fmt.Sprintf("u%04d", i), fmt.Sprintf("secret-%04d", i) }

func pct(v []time.Duration, p float64) time.Duration {
	k := int(p/100*float64(len(v))+0.5) - 1
	k = max(0, min(len(v)-1, k))
	return v[k]
}

func main() {
	socket := flag.String("socket", "", "unix socket of the auth service")
	addr := flag.String("addr", "", "host:port of the auth service (instead of -socket)")
	n := flag.Int("n", 10000, "requests in total")
	conns := flag.Int("c", 1, "connections (one request in flight each)")
	mode := flag.String("mode", "hit", "hit (always u0000) or miss (u(i mod users))")
	users := flag.Int("users", 1000, "number of users for -mode miss")
	check := flag.Bool("check", false, "correctness probe instead of a measurement")
	flag.Parse()
	network, target := "unix", *socket
	if *addr != "" {
		network, target = "tcp", *addr
	}
	if target == "" {
		fmt.Fprintln(os.Stderr, "authd-bench: -socket or -addr is required")
		os.Exit(2)
	}
	if *check {
		if err := probe(network, target); err != nil {
			fmt.Fprintln(os.Stderr, "authd-bench: check:", err)
			os.Exit(1)
		}
		return
	}
	res, err := run(network, target, *n, *conns, *mode, *users)
	if err != nil {
		fmt.Fprintln(os.Stderr, "authd-bench:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

// probe checks good/bad/disabled/unknown logins (the peer's check), with
// no-penalty like the peer so failures do not slow the measurements after it.
func probe(network, target string) error {
	c, err := dial(network, target)
	if err != nil {
		return err
	}
	defer c.c.Close()
	u0, p0 := user(0)
	u1, _ := user(1)
	u999, p999 := user(999)
	for _, tc := range []struct{ u, p, want string }{
		{u0, p0, "OK"}, {u1, "wrong", "FAIL"}, {"disabled", "disabledpw", "FAIL"}, {"nosuch", "x", "FAIL"}, {u999, p999, "OK"},
	} {
		l, err := c.authExtra(tc.u, tc.p, "no-penalty\t")
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "  AUTH %s -> %s", tc.u, l)
		if !strings.HasPrefix(l, tc.want+"\t") {
			return fmt.Errorf("%s: want %s, got %q", tc.u, tc.want, l)
		}
	}
	return nil
}

type result struct {
	Requests    int     `json:"requests"`
	Connections int     `json:"connections"`
	Cache       string  `json:"cache"`
	WallS       float64 `json:"wall_s"`
	AuthsPerS   float64 `json:"auths_per_s"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	ClientCPUs  float64 `json:"client_cpu_s"` // user+system CPU of this client during the run
}

func run(network, target string, n, nconn int, mode string, nusers int) (result, error) {
	type out struct {
		lat []time.Duration
		end time.Time
		err error
	}
	start := make(chan struct{})
	var ready sync.WaitGroup
	outs := make(chan out, nconn)
	for w := 0; w < nconn; w++ {
		ready.Add(1)
		go func(w int) {
			c, err := dial(network, target)
			if err == nil {
				defer c.c.Close()
				u, p := user(0)
				_, err = c.auth(u, p) // warm-up (fills the cache in hit mode)
			}
			var creds [][2]string
			for i := w; i < n; i += nconn {
				u := 0
				if mode == "miss" {
					u = i % nusers
				}
				a, b := user(u)
				creds = append(creds, [2]string{a, b})
			}
			ready.Done()
			<-start
			if err != nil {
				outs <- out{err: err}
				return
			}
			lat := make([]time.Duration, 0, len(creds))
			for _, cr := range creds {
				t := time.Now()
				l, err := c.auth(cr[0], cr[1])
				lat = append(lat, time.Since(t))
				if err == nil && !strings.HasPrefix(l, "OK\t") {
					err = fmt.Errorf("auth %s failed: %q", cr[0], l)
				}
				if err != nil {
					outs <- out{err: err}
					return
				}
			}
			outs <- out{lat: lat, end: time.Now()}
		}(w)
	}
	ready.Wait()
	cpu0 := cpuTime()
	t0 := time.Now()
	close(start)
	var all []time.Duration
	var end time.Time
	var errs []error
	for w := 0; w < nconn; w++ {
		o := <-outs
		if o.err != nil {
			errs = append(errs, o.err)
		}
		all = append(all, o.lat...)
		if o.end.After(end) {
			end = o.end
		}
	}
	if len(errs) > 0 {
		return result{}, errors.Join(errs...)
	}
	cpu := cpuTime() - cpu0
	slices.Sort(all)
	wall := end.Sub(t0).Seconds()
	return result{
		Requests: n, Connections: nconn, Cache: mode, WallS: round(wall, 3),
		AuthsPerS: round(float64(n)/wall, 1),
		P50ms:     round(pct(all, 50).Seconds()*1e3, 3), P99ms: round(pct(all, 99).Seconds()*1e3, 3),
		ClientCPUs: round(cpu.Seconds(), 3),
	}, nil
}

// cpuTime is the process's user+system CPU so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func round(v float64, d int) float64 {
	p := 1.0
	for range d {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}
