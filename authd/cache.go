package authd

import (
	"container/list"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// cache remembers recent PLAIN/LOGIN verdicts so a busy Postfix does not send
// every AUTH to LDAP (Dovecot's auth_cache). Keys are SHA-256(random process key ‖
// login NUL password): no password is kept, and the digests are useless outside
// this process. Entries expire after ttl (positive) or negTTL (negative); the
// total estimated size is bounded, least recently used first out.
type cache struct {
	mu      sync.Mutex
	key     []byte
	ttl     time.Duration
	negTTL  time.Duration
	max     int64
	size    int64
	lru     *list.List                 // front = most recent
	items   map[[32]byte]*list.Element // → *cacheEntry
	byLogin map[string]map[[32]byte]struct{}
	now     func() time.Time
}

type cacheEntry struct {
	key     [32]byte
	login   string // as the client sent it
	user    string // canonical user for OK
	ok      bool
	expires time.Time
	size    int64
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
func (c *cache) get(k [32]byte) (user string, ok, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, hit := c.items[k]
	if !hit {
		return "", false, false
	}
	e := el.Value.(*cacheEntry)
	if c.now().After(e.expires) {
		c.remove(el)
		return "", false, false
	}
	c.lru.MoveToFront(el)
	return e.user, e.ok, true
}

// put stores a verdict. A positive verdict for a login drops that login's other
// positive entries: the password changed, the old one must stop working.
func (c *cache) put(k [32]byte, login, user string, ok bool) {
	ttl := c.ttl
	if !ok {
		ttl = c.negTTL
	}
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		for other := range c.byLogin[login] {
			if el := c.items[other]; other != k && el != nil && el.Value.(*cacheEntry).ok {
				c.remove(el)
			}
		}
	}
	if el, hit := c.items[k]; hit {
		c.remove(el)
	}
	e := &cacheEntry{key: k, login: login, user: user, ok: ok, expires: c.now().Add(ttl),
		size: entryOverhead + int64(len(login)+len(user))}
	if e.size > c.max {
		return
	}
	c.items[k] = c.lru.PushFront(e)
	if c.byLogin[login] == nil {
		c.byLogin[login] = map[[32]byte]struct{}{}
	}
	c.byLogin[login][k] = struct{}{}
	c.size += e.size
	for c.size > c.max {
		c.remove(c.lru.Back())
	}
}

// forget drops every entry of a login (e.g. it was found disabled).
func (c *cache) forget(login string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.byLogin[login] {
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
	if m := c.byLogin[e.login]; m != nil {
		delete(m, e.key)
		if len(m) == 0 {
			delete(c.byLogin, e.login)
		}
	}
	c.size -= e.size
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}
