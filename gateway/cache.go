package gateway

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go"
)

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

// blockChangeSubject tells every gateway that a pair's block changed, so
// each drops what it cached for the pair before the change is answered.
const blockChangeSubject = "natter.blocks.changed"

func pairKey(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return a + "|" + b
}

// blocked answers from the cache, or the store.
func (g *Gateway) blocked(ctx context.Context, a, b string) (bool, error) {
	k := pairKey(a, b)
	v, ok, gen := g.blocks.get(k)
	if ok {
		return v, nil
	}
	v, err := g.st.Blocked(ctx, a, b)
	if err != nil {
		return false, err
	}
	g.blocks.put(k, v, gen)
	return v, nil
}

// userExists answers from the cache (users are never deleted), or the store.
func (g *Gateway) userExists(ctx context.Context, id string) error {
	_, ok, gen := g.users.get(id)
	if ok {
		return nil
	}
	if _, err := g.st.UserByID(ctx, id); err != nil {
		return fromStore(err, "user")
	}
	g.users.put(id, struct{}{}, gen)
	return nil
}

// announceBlockChange drops the pair from every gateway's cache. It flushes,
// so this gateway's own subscription has it before the request returns.
func (g *Gateway) announceBlockChange(a, b string) error {
	g.blocks.forget(pairKey(a, b))
	if err := g.nc.Publish(blockChangeSubject, []byte(pairKey(a, b))); err != nil {
		return err
	}
	return g.nc.Flush()
}

func (g *Gateway) watchBlockChanges() (*nats.Subscription, error) {
	return g.nc.Subscribe(blockChangeSubject, func(m *nats.Msg) { g.blocks.forget(string(m.Data)) })
}
