package chat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/natter-chat/natter/streams"
)

// registry is this node's part of the cluster-wide presence registry
// (streams.PresenceKV): it holds the node's lease, writes a user's key
// when the node gains its first or loses its last session of the user,
// and follows the leases of every node and the keys of the users that
// local subscriptions watch.
//
// Cost: at idle one KV write per lease renewal (lease/3), whatever the
// number of connections; one compare-and-set per user per transition.
type registry struct {
	kv       *streams.PresenceKV
	node     string
	lease    time.Duration
	sessions *Sessions
	log      *slog.Logger

	mu      sync.Mutex
	leases  map[string]streams.Lease // every node lease seen, alive or lapsed
	watched map[string]*watched      // users some local subscription watches
	loaded  chan struct{}            // closed once the leases were read
	once    sync.Once

	shards []*writeShard

	// ctx ends with Run: the watchers' callbacks evaluate privacy with it.
	ctx    context.Context
	cancel context.CancelFunc
}

// watched is the cached record of a user local subscriptions watch.
type watched struct {
	rec  streams.PresenceRecord
	rev  uint64
	subs map[*PresenceSub]struct{}
}

// writeShard serializes the writes of the users hashed to it, so that a
// user's transitions are written in order; a user marked dirty twice
// before its write is written once, with its state then.
type writeShard struct {
	mu    sync.Mutex
	dirty map[string]struct{}
	wake  chan struct{}
}

// writeShards bounds the compare-and-set writes in flight: enough that
// 10,000 connects reach the bucket in about a second, few enough to keep
// JetStream's queue short.
const writeShards = 8

func newNodeID(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	if len(prefix) > 40 || !streams.ValidNodeID(prefix) {
		prefix = "n" // a key-safe name, whatever the configuration said
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

func newRegistry(kv *streams.PresenceKV, node string, lease time.Duration, sessions *Sessions, log *slog.Logger) *registry {
	r := &registry{
		kv: kv, node: node, lease: lease, sessions: sessions, log: log,
		leases: map[string]streams.Lease{}, watched: map[string]*watched{}, loaded: make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for range writeShards {
		r.shards = append(r.shards, &writeShard{dirty: map[string]struct{}{}, wake: make(chan struct{}, 1)})
	}
	return r
}

// changed is Sessions' hook: user's session count on this node went from
// 0 to 1 or back. It runs under Sessions' lock, so it only marks the
// user; the writers write the key and tell local subscriptions.
func (r *registry) changed(user string) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(user))
	s := r.shards[h.Sum32()%uint32(len(r.shards))]
	s.mu.Lock()
	s.dirty[user] = struct{}{}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run holds the lease, runs the writers and the watchers until ctx ends,
// then writes what is pending and drops the lease (a clean shutdown shows
// this node's users offline at once).
func (r *registry) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, r.cancel)
	defer stop()
	if err := r.kv.RenewLease(ctx, r.node, r.lease); err != nil {
		r.log.Warn("presence lease", "node", r.node, "err", err)
	}
	var wg sync.WaitGroup
	spawn := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	for _, s := range r.shards {
		spawn(func() { r.writer(ctx, s) })
	}
	spawn(func() {
		_ = r.kv.WatchLeases(ctx, r.leaseChanged, func() { r.once.Do(func() { close(r.loaded) }) })
	})
	spawn(func() { _ = r.kv.WatchUsers(ctx, r.userChanged) })
	renew := time.NewTicker(r.lease / 3)
	defer renew.Stop()
	failing := false
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-renew.C:
			if err := r.kv.RenewLease(ctx, r.node, r.lease); err != nil && ctx.Err() == nil {
				if !failing {
					r.log.Warn("presence lease not renewed", "node", r.node, "err", err)
				}
				failing = true
			} else if failing {
				r.log.Info("presence lease renewed again", "node", r.node)
				failing = false
			}
		}
	}
	wg.Wait()
	// Shutdown: the sessions are closed by now (the gateway closes them
	// before chat stops); write what is pending, then end the lease.
	fctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, s := range r.shards {
		r.flush(fctx, s)
	}
	if err := r.kv.DropLease(fctx, r.node); err != nil {
		r.log.Warn("presence lease not dropped: this node's users read online until it lapses", "node", r.node, "lease", r.lease, "err", err)
	}
	return nil
}

func (r *registry) writer(ctx context.Context, s *writeShard) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		if !r.flush(ctx, s) {
			// JetStream refused: the users stay dirty; try again soon.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
}

// flush writes every dirty user of s; false when a write failed (those
// users are dirty again).
func (r *registry) flush(ctx context.Context, s *writeShard) bool {
	s.mu.Lock()
	users := s.dirty
	s.dirty = map[string]struct{}{}
	s.mu.Unlock()
	ok := true
	for u := range users {
		err := r.write(ctx, u)
		r.notify(u) // local subscribers need not wait for the watcher
		if err != nil {
			ok = false
			s.mu.Lock()
			s.dirty[u] = struct{}{}
			s.mu.Unlock()
			if ctx.Err() == nil {
				r.log.Debug("presence write", "user", u, "err", err)
			}
		}
	}
	return ok
}

// write makes user's key match this node's sessions, and drops the nodes
// whose lease is known to have lapsed.
func (r *registry) write(ctx context.Context, user string) error {
	online, seen := r.sessions.status(user)
	now := time.Now().UnixMilli()
	return r.kv.UpdateUser(ctx, user, func(rec *streams.PresenceRecord) bool {
		changed := false
		for n, since := range rec.Nodes {
			if n == r.node {
				continue
			}
			if alive, at, known := r.leaseOf(n); !alive && known {
				delete(rec.Nodes, n)
				rec.LastSeen = max(rec.LastSeen, at, since)
				changed = true
			}
		}
		_, here := rec.Nodes[r.node]
		switch {
		case online && !here:
			if rec.Nodes == nil {
				rec.Nodes = map[string]int64{}
			}
			rec.Nodes[r.node] = now
			changed = true
		case !online && here:
			delete(rec.Nodes, r.node)
			rec.LastSeen = max(rec.LastSeen, seen)
			changed = true
		}
		return changed
	})
}

// leaseOf says whether node's lease is alive; known is false for a node
// never seen (its lease lapsed long ago, or the leases are not loaded),
// and at is when a lapsed lease lapsed (ms).
func (r *registry) leaseOf(node string) (alive bool, at int64, known bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.leases[node]
	if !ok {
		select {
		case <-r.loaded:
			return false, 0, true // gone for longer than the bucket keeps markers
		default:
			return false, 0, false
		}
	}
	return l.Alive, l.At.UnixMilli(), true
}

func (r *registry) leaseChanged(l streams.Lease) {
	r.mu.Lock()
	r.leases[l.Node] = l
	var users []string
	for u, w := range r.watched {
		if _, ok := w.rec.Nodes[l.Node]; ok {
			users = append(users, u)
		}
	}
	r.mu.Unlock()
	if l.Node == r.node && !l.Alive && r.ctx.Err() == nil {
		// Our lease lapsed (NATS was out of reach for a lease): other
		// nodes may have dropped us from user keys. Renew, rewrite all.
		r.log.Warn("presence lease lapsed; renewing and rewriting this node's users", "node", r.node)
		_ = r.kv.RenewLease(r.ctx, r.node, r.lease)
		for _, u := range r.sessions.onlineUsers() {
			r.changed(u)
		}
	}
	for _, u := range users {
		r.notify(u)
	}
}

func (r *registry) userChanged(user string, rec streams.PresenceRecord, rev uint64) {
	r.mu.Lock()
	w := r.watched[user]
	if w == nil || rev <= w.rev {
		r.mu.Unlock()
		return
	}
	w.rec, w.rev = rec, rev
	r.mu.Unlock()
	r.notify(user)
}

// notify tells the subscriptions watching user that it may have changed.
func (r *registry) notify(user string) {
	r.mu.Lock()
	w := r.watched[user]
	if w == nil {
		r.mu.Unlock()
		return
	}
	subs := make([]*PresenceSub, 0, len(w.subs))
	for s := range w.subs {
		subs = append(subs, s)
	}
	r.mu.Unlock()
	for _, s := range subs {
		s.changed(r.ctx, user)
	}
}

// watch adds sub to user's watchers, reading the user's key when nobody
// here watched it yet.
func (r *registry) watch(ctx context.Context, user string, sub *PresenceSub) {
	r.mu.Lock()
	w := r.watched[user]
	fresh := w == nil
	if fresh {
		w = &watched{subs: map[*PresenceSub]struct{}{}}
		r.watched[user] = w
	}
	w.subs[sub] = struct{}{}
	r.mu.Unlock()
	if !fresh {
		return
	}
	// The watcher may deliver a newer revision meanwhile: keep the newest.
	rec, rev, err := r.kv.User(ctx, user)
	if err != nil {
		return
	}
	r.mu.Lock()
	if rev > w.rev {
		w.rec, w.rev = rec, rev
	}
	r.mu.Unlock()
}

func (r *registry) unwatch(user string, sub *PresenceSub) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.watched[user]; w != nil {
		delete(w.subs, sub)
		if len(w.subs) == 0 {
			delete(r.watched, user)
		}
	}
}

// status is user's presence across the cluster: online while this node
// or any node named in the user's key with a live lease holds a session.
// This node's own sessions are read directly (its key may lag behind).
func (r *registry) status(ctx context.Context, user string) (online bool, lastSeen int64) {
	r.mu.Lock()
	w := r.watched[user]
	var rec streams.PresenceRecord
	cached := w != nil && w.rev > 0
	if cached {
		rec = w.rec
	}
	r.mu.Unlock()
	if !cached {
		var err error
		if rec, _, err = r.kv.User(ctx, user); err != nil {
			r.log.Debug("presence read", "user", user, "err", err)
		}
	}
	return r.view(user, rec)
}

// view evaluates rec against the leases and this node's sessions. A node
// whose lease lapsed counts as seen until it lapsed; one that lapsed too
// long ago to be known counts as seen when the user connected to it (a
// lower bound).
func (r *registry) view(user string, rec streams.PresenceRecord) (online bool, lastSeen int64) {
	here, seen := r.sessions.status(user)
	if here {
		return true, 0
	}
	lastSeen = max(rec.LastSeen, seen)
	for n, since := range rec.Nodes {
		if n == r.node {
			continue
		}
		alive, at, _ := r.leaseOf(n)
		if alive {
			return true, 0
		}
		lastSeen = max(lastSeen, at, since)
	}
	return false, lastSeen
}
