package chat

import "sync"

// cache is a bounded map for facts the send path reads on every message
// (a user exists, two users have not blocked each other). It is cleared
// when full rather than kept in LRU order: a miss costs one store read.
type cache[V any] struct {
	mu  sync.RWMutex
	m   map[string]V
	max int
	// gen counts forgets: a value read from the store before a forget
	// must not be cached after it.
	gen uint64
}

func newCache[V any](max int) *cache[V] { return &cache[V]{m: map[string]V{}, max: max} }

// get returns the cached value, or the generation to pass to put.
func (c *cache[V]) get(k string) (v V, ok bool, gen uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok = c.m[k]
	return v, ok, c.gen
}

// put caches v unless something was forgotten since get returned gen.
func (c *cache[V]) put(k string, v V, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = v
}

func (c *cache[V]) forget(k string) {
	c.mu.Lock()
	delete(c.m, k)
	c.gen++
	c.mu.Unlock()
}
