package cassandra

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/natter-chat/natter/store"
)

// TestLatency measures the adapter against the Cassandra of
// NATTER_TEST_CASSANDRA_HOSTS when NATTER_CASSANDRA_LATENCY is set:
//
//	NATTER_CASSANDRA_LATENCY=1 NATTER_TEST_CASSANDRA_HOSTS=127.0.0.1:59042 \
//	  go test -run TestLatency -v ./store/cassandra/
//
// 10,000 SaveMessages batches of 10 messages (4 writers, 100 direct
// conversations), then 1,000 History pages of 50 from 4 readers.
func TestLatency(t *testing.T) {
	if os.Getenv("NATTER_CASSANDRA_LATENCY") == "" {
		t.Skip("set NATTER_CASSANDRA_LATENCY=1 to measure")
	}
	const (
		workers  = 4
		convs    = 100
		batches  = 10_000
		perBatch = 10
		pages    = 1_000
	)
	db := openFresh(t, Options{})
	ctx := t.Context()
	for c := range convs {
		if err := db.EnsureDirect(ctx, fmt.Sprintf("c%d", c), "hub", fmt.Sprintf("u%d", c), 1); err != nil {
			t.Fatal(err)
		}
	}
	measure := func(n int, op func(i int) error) *hdrhistogram.Histogram {
		h := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
		var mu sync.Mutex
		var wg sync.WaitGroup
		next := make(chan int)
		errs := make(chan error, workers)
		for range workers {
			wg.Go(func() {
				for i := range next {
					start := time.Now()
					if err := op(i); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					_ = h.RecordValue(time.Since(start).Microseconds())
					mu.Unlock()
				}
			})
		}
	feed:
		for i := range n {
			select {
			case next <- i:
			case err := <-errs:
				close(next)
				wg.Wait()
				t.Fatal(err)
				break feed
			}
		}
		close(next)
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		return h
	}
	// Batch i is the (i/convs)-th batch of conversation i%convs: each
	// writer's batches of one conversation follow each other in seq.
	start := time.Now()
	writes := measure(batches, func(i int) error {
		conv, round := i%convs, int64(i/convs)
		batch := make([]store.Message, perBatch)
		for k := range batch {
			seq := round*perBatch + int64(k) + 1
			batch[k] = store.Message{ID: fmt.Sprintf("m%d-%d", conv, seq), ConversationID: fmt.Sprintf("c%d", conv), Seq: seq,
				SenderID: fmt.Sprintf("u%d", conv), RecipientID: "hub", MessageType: store.ConversationDirect,
				Content: "a message of about the length people write, forty or so bytes", ClientMessageID: fmt.Sprintf("x%d", seq), ServerTS: seq}
		}
		return db.SaveMessages(ctx, batch)
	})
	writeTook := time.Since(start)
	start = time.Now()
	reads := measure(pages, func(i int) error {
		// A page of 50 before a random-ish point: half cross a bucket.
		before := int64(1 + (i*7919)%(batches/convs*perBatch))
		_, err := db.History(ctx, fmt.Sprintf("c%d", i%convs), "hub", before+50, 50)
		return err
	})
	readTook := time.Since(start)
	ms := func(us int64) string { return fmt.Sprintf("%.1f ms", float64(us)/1000) }
	t.Logf("SaveMessages, batches of %d: %d in %v (%.0f msg/s): p50 %s, p99 %s, max %s", perBatch, batches,
		writeTook.Round(time.Millisecond), float64(batches*perBatch)/writeTook.Seconds(),
		ms(writes.ValueAtQuantile(50)), ms(writes.ValueAtQuantile(99)), ms(writes.Max()))
	t.Logf("History, pages of 50: %d in %v: p50 %s, p99 %s, max %s", pages, readTook.Round(time.Millisecond),
		ms(reads.ValueAtQuantile(50)), ms(reads.ValueAtQuantile(99)), ms(reads.Max()))
}
