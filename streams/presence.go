package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The presence registry lives in one KV bucket with two kinds of keys:
//
//	node.<node_id>  a gateway node's lease: renewed every few seconds with
//	                a per-message TTL; it vanishes by itself when the node
//	                stops renewing (the bucket leaves a MaxAge marker that
//	                every watcher sees)
//	user.<user_id>  the nodes holding connections of the user and when the
//	                user was last seen: written only when a node gains its
//	                first or loses its last connection of the user
//
// A user is online while any node named in its key holds a live lease.
// Keys naming a lapsed node are read as offline; they are cleaned lazily
// by the next write of the key. At idle the bucket takes one write per
// node per renewal, whatever the number of connections.
const (
	BucketPresence = "natter_presence"

	presenceNodePrefix = "node."
	presenceUserPrefix = "user."
)

// PresenceBucket is the registry's KV bucket. Node keys carry their own
// TTL (the lease); LimitMarkerTTL keeps the marker of a lapsed lease for
// an hour, so a node that starts later still learns when a dead node's
// lease ran out.
func PresenceBucket(l Limits) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         BucketPresence,
		Description:    "natter: node leases and the nodes holding each user's connections",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       l.Replicas,
		LimitMarkerTTL: time.Hour,
	}
}

// PresenceRecord is the value of user.<user_id>.
type PresenceRecord struct {
	V int `json:"v"`
	// Nodes maps each node holding connections of the user to when it
	// got the first of them (ms).
	Nodes map[string]int64 `json:"nodes,omitempty"`
	// LastSeen is when a node last lost its last connection of the user
	// (ms); 0 when never.
	LastSeen int64 `json:"last_seen,omitempty"`
}

// Lease is what a node-lease watcher reports: Alive, or lapsed (expired
// or deleted) at At.
type Lease struct {
	Node  string
	Alive bool
	At    time.Time
}

// PresenceKV reads and writes the registry.
type PresenceKV struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

// NewPresenceKV opens the bucket (Ensure creates it).
func NewPresenceKV(ctx context.Context, js jetstream.JetStream) (*PresenceKV, error) {
	kv, err := js.KeyValue(ctx, BucketPresence)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketPresence, err)
	}
	return &PresenceKV{js: js, kv: kv}, nil
}

// ValidNodeID reports a node id usable in a key: 1-64 of [a-zA-Z0-9_-].
func ValidNodeID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// RenewLease (re)writes node's lease with a fresh TTL. KV's API sets a
// TTL only on Create, so the renewal publishes on the key's subject with
// a Nats-TTL header, which is what Create does underneath.
func (p *PresenceKV) RenewLease(ctx context.Context, node string, ttl time.Duration) error {
	subj := "$KV." + BucketPresence + "." + presenceNodePrefix + node
	data := []byte(fmt.Sprintf(`{"renewed":%d}`, time.Now().UnixMilli()))
	if _, err := p.js.Publish(ctx, subj, data, jetstream.WithMsgTTL(ttl)); err != nil {
		return fmt.Errorf("renew lease of node %s: %w: %v", node, ErrUnavailable, err)
	}
	return nil
}

// DropLease ends node's lease at once (a clean shutdown): every user
// only this node held reads offline from then on.
func (p *PresenceKV) DropLease(ctx context.Context, node string) error {
	if err := p.kv.Delete(ctx, presenceNodePrefix+node); err != nil {
		return fmt.Errorf("drop lease of node %s: %w: %v", node, ErrUnavailable, err)
	}
	return nil
}

// User reads user's record and its revision (0 when there is none).
func (p *PresenceKV) User(ctx context.Context, user string) (PresenceRecord, uint64, error) {
	e, err := p.kv.Get(ctx, presenceUserPrefix+user)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return PresenceRecord{}, 0, nil
	}
	if err != nil {
		return PresenceRecord{}, 0, fmt.Errorf("read presence of %s: %w: %v", user, ErrUnavailable, err)
	}
	rec, err := decodePresence(e.Value())
	return rec, e.Revision(), err
}

func decodePresence(b []byte) (PresenceRecord, error) {
	var rec PresenceRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return PresenceRecord{}, fmt.Errorf("decode presence record: %w", err)
	}
	return rec, nil
}

// UpdateUser applies change to user's record with compare-and-set,
// retrying when another node wrote in between. change reports whether it
// changed anything; nothing is written when it did not.
func (p *PresenceKV) UpdateUser(ctx context.Context, user string, change func(*PresenceRecord) bool) error {
	key := presenceUserPrefix + user
	for try := 0; ; try++ {
		rec, rev, err := p.User(ctx, user)
		if err != nil {
			return err
		}
		if !change(&rec) {
			return nil
		}
		rec.V = 1
		b, _ := json.Marshal(rec)
		if rev == 0 {
			_, err = p.kv.Create(ctx, key, b)
		} else {
			_, err = p.kv.Update(ctx, key, b, rev)
		}
		if err == nil {
			return nil
		}
		conflict := errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
		if !conflict || try >= 20 || ctx.Err() != nil {
			return fmt.Errorf("write presence of %s: %w: %v", user, ErrUnavailable, err)
		}
	}
}

// WatchLeases calls fn with every node lease there is, then with every
// change, until ctx ends; loaded is called once the leases that existed
// at the start were reported. fn runs on one goroutine.
func (p *PresenceKV) WatchLeases(ctx context.Context, fn func(Lease), loaded func()) error {
	return p.watch(ctx, presenceNodePrefix+"*", false, func(e jetstream.KeyValueEntry) {
		fn(Lease{Node: strings.TrimPrefix(e.Key(), presenceNodePrefix), Alive: e.Operation() == jetstream.KeyValuePut, At: e.Created()})
	}, loaded)
}

// WatchUsers calls fn with every change of a user record from now on,
// until ctx ends. fn runs on one goroutine.
func (p *PresenceKV) WatchUsers(ctx context.Context, fn func(user string, rec PresenceRecord, rev uint64)) error {
	return p.watch(ctx, presenceUserPrefix+"*", true, func(e jetstream.KeyValueEntry) {
		var rec PresenceRecord
		if e.Operation() == jetstream.KeyValuePut {
			var err error
			if rec, err = decodePresence(e.Value()); err != nil {
				return
			}
		}
		fn(strings.TrimPrefix(e.Key(), presenceUserPrefix), rec, e.Revision())
	}, func() {})
}

// watch runs a watcher, restarting it after a failure (the ordered
// consumer underneath survives reconnections on its own).
func (p *PresenceKV) watch(ctx context.Context, filter string, updatesOnly bool, fn func(jetstream.KeyValueEntry), loaded func()) error {
	for ctx.Err() == nil {
		var opts []jetstream.WatchOpt
		if updatesOnly {
			opts = append(opts, jetstream.UpdatesOnly())
		}
		w, err := p.kv.Watch(ctx, filter, opts...)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for e := range w.Updates() {
			if e == nil {
				loaded()
				continue
			}
			fn(e)
		}
		_ = w.Stop()
	}
	return nil
}

// Subscribe delivers the ephemeral events published to user's live
// subject (typing) to fn, on NATS's goroutine for the subscription.
func (e *Ephemeral) Subscribe(user string, fn func(data []byte)) (*nats.Subscription, error) {
	sub, err := e.nc.Subscribe(LiveSubject(user), func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w: %v", LiveSubject(user), ErrUnavailable, err)
	}
	return sub, nil
}
