package policyd

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/store/redis"
)

// TestSharedRateLimitRedis: two policyd instances, each with its own Redis
// client, on one REAL redis-server: each sees the other's counts.
func TestSharedRateLimitRedis(t *testing.T) {
	srv := testenv.Redis(t)
	prefix := fmt.Sprintf("policyd-test-%d:", time.Now().UnixNano())
	open := func() *redis.Store {
		st, err := redis.New(redis.Options{Addrs: []string{srv.Addr}, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a, b := open(), open()
	testSharedRateLimitStores(t, a, b)
}

// TestRedisDown: with Redis stopped, fail-closed answers DEFER_IF_PERMIT and
// fail-open DUNNO, both counted; nothing crashes and service resumes when Redis
// is back.
func TestRedisDown(t *testing.T) {
	srv := testenv.Redis(t)
	st, err := redis.New(redis.Options{Addrs: []string{srv.Addr}, Prefix: fmt.Sprintf("policyd-down-%d:", time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
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
