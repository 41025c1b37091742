package dnsbl

import (
	"sync"
	"time"
)

// cache keeps answers for a short TTL. When full, expired entries are swept
// and, if that frees nothing, the oldest-inserted entry is dropped: DNSBL
// answers are cheap to redo, so a simple FIFO bound is enough.
type cache struct {
	mu    sync.Mutex
	max   int
	m     map[string]cacheEntry
	order []string
}

type cacheEntry struct {
	a   answer
	exp time.Time
}

func newCache(max int) *cache {
	return &cache{max: max, m: make(map[string]cacheEntry)}
}

func (c *cache) get(name string, now time.Time) (answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[name]
	if !ok || now.After(e.exp) {
		return answer{}, false
	}
	return e.a, true
}

func (c *cache) put(name string, a answer, exp time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[name]; !ok {
		for len(c.m) >= c.max && len(c.order) > 0 {
			old := c.order[0]
			c.order = c.order[1:]
			delete(c.m, old)
		}
		c.order = append(c.order, name)
	}
	c.m[name] = cacheEntry{a: a, exp: exp}
	// Compact the FIFO slice now and then so it does not grow without bound
	// through re-inserted names.
	if len(c.order) > 2*c.max {
		keep := c.order[:0]
		for _, n := range c.order {
			if _, ok := c.m[n]; ok {
				keep = append(keep, n)
			}
		}
		c.order = keep
	}
}
