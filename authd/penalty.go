package authd

import (
	"crypto/sha256"
	"net/netip"
	"sync"
	"time"
)

// penalty slows password guessing like Dovecot's auth_penalty: each failure
// for the same remote IP (an IPv6 /48) + login doubles the delay before the FAIL reply, from
// base up to max (kept well below Postfix's 10 s auth timeout); a success or
// forget time without failures resets it. The table is bounded.
type penalty struct {
	mu     sync.Mutex
	base   time.Duration
	max    time.Duration
	forget time.Duration
	limit  int
	m      map[string]*penEntry
	now    func() time.Time
}

type penEntry struct {
	failures int
	last     time.Time
}

const penaltyTableLimit = 100_000

func newPenalty(base, max time.Duration) *penalty {
	return &penalty{base: base, max: max, forget: 15 * time.Minute, limit: penaltyTableLimit,
		m: map[string]*penEntry{}, now: time.Now}
}

// penaltyKey folds the login's case and surrounding space: the directories
// match logins that way (LDAP's cn, the users file), so "Alice" and "alice"
// are one account and must share one penalty. The key is a digest, so every
// entry has the same small size: a failed login may be as long as the SASL
// response (an invalid over-long name is penalised too), and the table holds
// up to penaltyTableLimit of them.
func penaltyKey(rip, login string) string {
	sum := sha256.Sum256([]byte(penaltyClient(rip) + "\x00" + accountName(login)))
	return string(sum[:16])
}

// penaltyIPv6Bits is the prefix that counts as one IPv6 client, Dovecot's
// PENALTY_IPV6_MASK_BITS: a client holds at least a /64 and could send every
// guess from a fresh address, each starting again at the first delay.
const penaltyIPv6Bits = 48

// penaltyClient names the client a penalty is counted for: an IPv4 address
// (also when written IPv4-mapped) or the /48 of an IPv6 one. Anything else
// (no rip=, an unparsable one) is taken as it is.
func penaltyClient(rip string) string {
	a, err := netip.ParseAddr(rip)
	if err != nil {
		return rip
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(penaltyIPv6Bits)
		return p.String()
	}
	return a.String()
}

// fail records a failure and returns how long to delay its reply.
func (p *penalty) fail(key string) time.Duration {
	if p.base <= 0 {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	e := p.m[key]
	if e == nil || now.Sub(e.last) > p.forget {
		if len(p.m) >= p.limit {
			p.sweep(now)
		}
		e = &penEntry{}
		p.m[key] = e
	}
	e.failures++
	e.last = now
	d := p.base
	for i := 1; i < e.failures && d < p.max; i++ {
		d *= 2
	}
	return min(d, p.max)
}

// success clears the key's failures.
func (p *penalty) success(key string) {
	p.mu.Lock()
	delete(p.m, key)
	p.mu.Unlock()
}

// sweep drops stale entries. If the table is still full (an attack from many
// addresses or logins), it drops the entries with the fewest failures first,
// so flooding the table with fresh keys cannot reset the delay an attacker has
// already built up against one account; only as a last resort is it cleared
// rather than allowed to grow without bound.
func (p *penalty) sweep(now time.Time) {
	low := -1
	for k, e := range p.m {
		if now.Sub(e.last) > p.forget {
			delete(p.m, k)
		} else if low < 0 || e.failures < low {
			low = e.failures
		}
	}
	for len(p.m) >= p.limit && low >= 0 {
		next := -1
		for k, e := range p.m {
			if e.failures <= low {
				delete(p.m, k)
			} else if next < 0 || e.failures < next {
				next = e.failures
			}
		}
		low = next
	}
}
