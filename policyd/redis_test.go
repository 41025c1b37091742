package policyd

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/store/redis"
)

// TestSharedRateLimitRedis: two policyd instances, each with its own Redis
// client, on one REAL redis-server: each sees the other's counts.
func TestSharedRateLimitRedis(t *testing.T) {
	srv := testenv.Redis(t)
	opts := redis.Options{Addrs: []string{srv.Addr}, Prefix: fmt.Sprintf("policyd-test-%d:", time.Now().UnixNano())}
	testSharedRateLimitStores(t, openRedis(t, opts), openRedis(t, opts))
}

// openRedis returns a Redis store (a client of its own) with opts, closed
// when the test ends.
func openRedis(t *testing.T, opts redis.Options) *redis.Store {
	t.Helper()
	st, err := redis.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestRedisDown: with Redis stopped, fail-closed answers DEFER_IF_PERMIT and
// fail-open DUNNO, both counted; nothing crashes and service resumes when Redis
// is back.
func TestRedisDown(t *testing.T) {
	srv := testenv.Redis(t)
	st := openRedis(t, redis.Options{Addrs: []string{srv.Addr}, Prefix: fmt.Sprintf("policyd-down-%d:", time.Now().UnixNano())})
	closed := greyConfig()
	closed.Greylist.ExemptNetworks = nil
	closed.StoreFailure = FailClosed
	open := closed
	open.StoreFailure = FailOpen
	tc := startServer(t, closed, Deps{Store: st})
	to := startServer(t, open, Deps{Store: st})
	cc, co := tc.dial(t), to.dial(t)
	if got := cc.ask(); !strings.HasPrefix(got, "DEFER_IF_PERMIT 4.7.1 Greylisted") {
		t.Fatalf("redis up: %q", got)
	}
	srv.Stop(t)
	restarted := false
	defer func() {
		if !restarted {
			srv.Start(t)
		}
	}()
	if got := cc.ask("recipient", "down@example.com"); got != tempFail.String() {
		t.Fatalf("fail closed: %q", got)
	}
	if got := co.ask("recipient", "down@example.com"); got != "DUNNO" {
		t.Fatalf("fail open: %q", got)
	}
	if n := counterValue(tc.m.storeFailures.WithLabelValues(CheckGreylist, FailClosed)); n != 1 {
		t.Errorf("fail-closed store failures = %v", n)
	}
	if n := counterValue(to.m.storeFailures.WithLabelValues(CheckGreylist, FailOpen)); n != 1 {
		t.Errorf("fail-open store failures = %v", n)
	}
	srv.Start(t)
	restarted = true
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := cc.ask("recipient", "back@example.com")
		if strings.HasPrefix(got, "DEFER_IF_PERMIT 4.7.1 Greylisted") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Redis came back: %q", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tripCounter is a TCP proxy in front of Redis that counts round trips: on each
// connection, data from the client that follows a reply from Redis (or opens
// the connection) starts one, unless it sets the connection up. A pipeline is
// one write, so one trip.
type tripCounter struct {
	addr  string
	trips atomic.Int64
}

func countTrips(t *testing.T, to string) *tripCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tc := &tripCounter{}
	tc.addr = testenv.Forward(t, ln, to, func(c, s net.Conn) {
		var replied atomic.Bool
		replied.Store(true)
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 64<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 {
					replied.Store(true)
					_, _ = c.Write(buf[:n])
				}
				if err != nil {
					c.Close()
					return
				}
			}
		}()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if replied.Swap(false) && !connSetup(buf[:n]) {
					tc.trips.Add(1)
				}
				_, _ = s.Write(buf[:n])
			}
			if err != nil {
				s.Close()
				<-done
				return
			}
		}
	})
	return tc
}

// connSetup reports whether a client's write starts with a command go-redis
// sends when it opens a connection (HELLO, CLIENT …): the pool may open one
// whenever it likes, and that is not a round trip of the request.
func connSetup(b []byte) bool {
	// "*<n>\r\n$<len>\r\n<command>\r\n"
	f := bytes.SplitN(b, []byte("\r\n"), 4)
	return len(f) == 4 && (bytes.EqualFold(f[2], []byte("hello")) || bytes.EqualFold(f[2], []byte("client")))
}

// TestRedisRoundTrips counts the Redis round trips of each kind of request.
// With the rate limit before greylisting (the benchmark's order), greylisting's
// reads travel with the rate limit's window script: one round trip for a
// request that only reads, one more for each write greylisting makes. With
// greylisting first there is nothing to carry its reads and each store call is
// its own trip.
func TestRedisRoundTrips(t *testing.T) {
	srv := testenv.Redis(t)
	for _, tc := range []struct {
		order []string
		want  []int64
		last  string
	}{
		// new triplet, early retry, passed, known, exempt, auto-whitelisted,
		// auto-whitelisted (the 5th message: refused when the rate limit
		// counts every request)
		{[]string{CheckRateLimit, CheckGreylist}, []int64{2, 1, 3, 2, 1, 1, 1}, "DEFER 4.7.1 Rate limit exceeded"},
		{[]string{CheckGreylist, CheckRateLimit}, []int64{2, 1, 4, 3, 1, 2, 2}, "DUNNO"},
	} {
		t.Run(strings.Join(tc.order, ","), func(t *testing.T) {
			proxy := countTrips(t, srv.Addr)
			st := openRedis(t, redis.Options{Addrs: []string{proxy.addr}, Prefix: fmt.Sprintf("policyd-trips-%d:", time.Now().UnixNano()),
				ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
			clk := newClock()
			cfg := aheadConfig()
			cfg.Checks = tc.order
			cfg.Greylist.AutoWhitelistAfter = 1
			cfg.RateLimit.Limits[0].Messages, cfg.RateLimit.Limits[0].Recipients = 4, 0
			s := startServer(t, cfg, Deps{Store: st, Now: clk.Now})
			c := s.dial(t)
			// Outside the count: the connection to Redis is opened (HELLO) and
			// the window script loaded (the first EVALSHA may answer NOSCRIPT).
			if got := c.ask("client_address", "198.51.100.8"); got != "DUNNO" {
				t.Fatalf("warm-up: %q", got)
			}
			steps := []struct {
				wait  time.Duration
				attrs []string
				want  string
			}{
				{0, []string{"instance", "1"}, "DEFER_IF_PERMIT 4.7.1 Greylisted"},
				{time.Minute, []string{"instance", "2"}, "DEFER_IF_PERMIT 4.7.1 Greylisted"},
				{5 * time.Minute, []string{"instance", "3"}, "PREPEND X-Greylist"},
				{time.Minute, []string{"instance", "4", "client_address", "192.0.2.11"}, "DUNNO"},
				{0, []string{"instance", "5", "client_address", "198.51.100.9"}, "DUNNO"},
				{0, []string{"instance", "6", "recipient", "b@example.com"}, "DUNNO"},
				{0, []string{"instance", "7", "recipient", "c@example.com"}, tc.last},
			}
			for i, step := range steps {
				clk.Add(step.wait)
				before := proxy.trips.Load()
				if got := c.ask(step.attrs...); !strings.HasPrefix(got, step.want) {
					t.Fatalf("request %d: %q, want %q", i, got, step.want)
				}
				if n := proxy.trips.Load() - before; n != tc.want[i] {
					t.Errorf("request %d (%s): %d round trips, want %d", i, step.want, n, tc.want[i])
				}
			}
		})
	}
}
