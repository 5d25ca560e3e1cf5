package chat

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bits-and-blooms/bloom/v3"

	"github.com/natter-chat/natter/streams"
)

// seenIDs is a Bloom filter over every (sender, client_message_id) that
// has a message. A send whose pair is surely not in it is new, so the
// store read that catches retries after JetStream's duplicate window is
// skipped; that read cost about a tenth of the server's CPU at 4,000
// msg/s. A "maybe" still asks the store, so a false positive costs one
// read and never a wrong answer.
//
// It is complete only while this process sequences every message (the
// single-node `natter serve`): another gateway's sends would not be in
// it. Until it has loaded, it answers "maybe" to everything.
type seenIDs struct {
	mu sync.RWMutex
	// Layers grow the filter without rebuilding it: when the newest is
	// full, a new one twice its size takes the adds.
	layers   []*bloom.BloomFilter
	inNewest uint
	capacity uint
	ready    atomic.Bool
}

const (
	seenInitialCapacity = 1 << 20
	seenFalsePositive   = 0.001 // ~1.8 MB for the first million ids
)

func newSeenIDs() *seenIDs {
	return &seenIDs{layers: []*bloom.BloomFilter{bloom.NewWithEstimates(seenInitialCapacity, seenFalsePositive)},
		capacity: seenInitialCapacity}
}

func seenKey(sender, clientMessageID string) []byte {
	k := make([]byte, 0, len(sender)+1+len(clientMessageID))
	k = append(k, sender...)
	k = append(k, 0) // neither part may contain NUL
	return append(k, clientMessageID...)
}

func (s *seenIDs) add(sender, clientMessageID string) {
	k := seenKey(sender, clientMessageID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inNewest >= s.capacity {
		s.capacity *= 2
		s.layers = append(s.layers, bloom.NewWithEstimates(s.capacity, seenFalsePositive))
		s.inNewest = 0
	}
	s.layers[len(s.layers)-1].Add(k)
	s.inNewest++
}

// mayHave is false only when sender surely never used clientMessageID.
func (s *seenIDs) mayHave(sender, clientMessageID string) bool {
	if !s.ready.Load() {
		return true
	}
	k := seenKey(sender, clientMessageID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, l := range s.layers {
		if l.Test(k) {
			return true
		}
	}
	return false
}

// clientIDLister is what loading the filter needs from the store.
type clientIDLister interface {
	ClientMessageIDs(ctx context.Context, fn func(senderID, clientMessageID string)) error
}

// load fills the filter from the store once the store holds every
// message acknowledged before now; messages acknowledged meanwhile are
// added by the send path. Then the filter answers. It returns nil when
// the filter could not be loaded: every send then reads the store.
func (s *seenIDs) load(ctx context.Context, wm *streams.Watermark, st clientIDLister, log *slog.Logger) error {
	start := time.Now()
	last, err := wm.ConvLastSeq(ctx)
	if err == nil {
		err = wm.Wait(ctx, last, streams.ConsumerPersist)
	}
	n := 0
	if err == nil {
		err = st.ClientMessageIDs(ctx, func(sender, cmid string) {
			s.add(sender, cmid)
			n++
		})
	}
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("dedupe filter not loaded: every send reads the store for retries", "err", err)
		}
		return nil
	}
	s.ready.Store(true)
	log.Info("dedupe filter loaded", "client_message_ids", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
