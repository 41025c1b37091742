package authd

import (
	"container/list"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"sync"
	"time"
)

// cache remembers recent PLAIN/LOGIN verdicts so a busy Postfix does not send
// every AUTH to LDAP (Dovecot's auth_cache). Keys are SHA-256(random process key ‖
// login NUL password): no password is kept, and the digests are useless outside
// this process. Entries expire after ttl (positive) or negTTL (negative); the
// total estimated size is bounded, least recently used first out.
//
// Entries are also indexed by account (accountName of the login and, for a
// success, of the canonical user), so that a new password or a disabled user
// reaches every cached spelling of that account: the directories match logins
// regardless of case, and a filter such as (|(uid=%u)(mail=%u)) accepts
// several names for one entry.
type cache struct {
	mu      sync.Mutex
	key     []byte
	ttl     time.Duration
	negTTL  time.Duration
	max     int64
	size    int64
	lru     *list.List                       // front = most recent
	items   map[[32]byte]*list.Element       // → *cacheEntry
	byLogin map[string]map[[32]byte]struct{} // accountName → keys
	now     func() time.Time
}

type cacheEntry struct {
	key      [32]byte
	accounts []string // the byLogin names this entry is indexed under
	grant    grant    // what an OK carries
	ok       bool
	expires  time.Time
	size     int64
}

// accountName folds a login or user name the way the directories match them
// (case-insensitively, LDAP also ignoring surrounding space), so "Alice" and
// "alice" are one account for the cache and the failure penalty.
func accountName(login string) string {
	return strings.ToLower(strings.TrimSpace(login))
}

// entryOverhead approximates the memory of one entry besides its strings.
const entryOverhead = 200

func newCache(ttl, negTTL time.Duration, maxBytes int64) *cache {
	k := make([]byte, 32)
	rand.Read(k)
	return &cache{
		key: k, ttl: ttl, negTTL: negTTL, max: maxBytes, lru: list.New(),
		items: map[[32]byte]*list.Element{}, byLogin: map[string]map[[32]byte]struct{}{}, now: time.Now,
	}
}

func (c *cache) enabled() bool { return c != nil && c.max > 0 && c.ttl > 0 }

// keyFor derives the cache key. SHA-256 over a fixed-length secret prefix is a
// sound keyed hash here (no length-extension risk: nobody sees the digests),
// and half the cost of an HMAC on the cache-hit path.
func (c *cache) keyFor(login, pw string) [32]byte {
	var buf [256]byte
	b := append(buf[:0], c.key...)
	b = append(b, login...)
	b = append(b, 0)
	b = append(b, pw...)
	k := sha256.Sum256(b)
	clear(b) // the password was in it
	return k
}

// get returns the cached verdict for (login, pw).
func (c *cache) get(k [32]byte) (g grant, ok, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, hit := c.items[k]
	if !hit {
		return grant{}, false, false
	}
	e := el.Value.(*cacheEntry)
	if c.now().After(e.expires) {
		c.remove(el)
		return grant{}, false, false
	}
	c.lru.MoveToFront(el)
	return e.grant, e.ok, true
}

// put stores a verdict. A positive verdict for an account drops that account's
// other positive entries, under whatever spelling they were cached: the
// password changed, the old one must stop working.
func (c *cache) put(k [32]byte, login string, g grant, ok bool) {
	ttl := c.ttl
	if !ok {
		ttl = c.negTTL
	}
	if ttl <= 0 {
		return
	}
	accounts := []string{accountName(login)}
	if u := accountName(g.user); ok && u != "" && u != accounts[0] {
		accounts = append(accounts, u)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		for _, a := range accounts {
			for other := range c.byLogin[a] {
				if el := c.items[other]; other != k && el != nil && el.Value.(*cacheEntry).ok {
					c.remove(el)
				}
			}
		}
	}
	if el, hit := c.items[k]; hit {
		c.remove(el)
	}
	size := entryOverhead + int64(len(g.user)+len(g.nets))
	for _, a := range accounts {
		size += int64(len(a))
	}
	e := &cacheEntry{key: k, accounts: accounts, grant: g, ok: ok, expires: c.now().Add(ttl), size: size}
	if e.size > c.max {
		return
	}
	c.items[k] = c.lru.PushFront(e)
	for _, a := range accounts {
		if c.byLogin[a] == nil {
			c.byLogin[a] = map[[32]byte]struct{}{}
		}
		c.byLogin[a][k] = struct{}{}
	}
	c.size += e.size
	for c.size > c.max {
		c.remove(c.lru.Back())
	}
}

// forget drops every entry of a login's account (e.g. it was found disabled).
func (c *cache) forget(login string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.byLogin[accountName(login)] {
		if el := c.items[k]; el != nil {
			c.remove(el)
		}
	}
}

// flush empties the cache (SIGHUP).
func (c *cache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Init()
	c.items = map[[32]byte]*list.Element{}
	c.byLogin = map[string]map[[32]byte]struct{}{}
	c.size = 0
}

func (c *cache) remove(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.lru.Remove(el)
	delete(c.items, e.key)
	for _, a := range e.accounts {
		if m := c.byLogin[a]; m != nil {
			delete(m, e.key)
			if len(m) == 0 {
				delete(c.byLogin, a)
			}
		}
	}
	c.size -= e.size
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}
