package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/config"
	"github.com/natter-chat/natter/natsnode"
	"github.com/natter-chat/natter/streams"
)

// pipelineParts are the parts of natter's traffic a message that
// raw-pipeline can leave out (--without):
//   - persist: persist's delivery and ack (as if one consumer both stored
//     and fanned out);
//   - own-copy: the sender's own INBOX event (its copy for its other
//     devices and its sync log) and its live copy;
//   - expected-seq: the sender's Nats-Expected-Last-Subject-Sequence
//     header, which has the server read the conversation's last message.
var pipelineParts = []string{"persist", "own-copy", "expected-seq"}

// headerSent carries, on every message of the raw pipeline, when its send
// was due (ns since the run's base).
const headerSent = "Bench-Sent"

// runRawPipeline is the raw-pipeline scenario: natter's JetStream traffic
// for each 1:1 message without natter. An embedded server set up as
// `natter serve` sets it up (the same streams and durable consumers), one
// in-process connection, and per message what natter does on it: the
// sender's synchronous CONV publish with its dedupe and expected-seq
// headers, persist's delivery and ack (no store), fanout's delivery, two
// INBOX publishes (sender and peer) and ack, and the republished copies
// to both users' live subscriptions. What natter adds (WebSockets, SQLite,
// JSON of client frames, the rules) is left out, so the process's CPU per
// delivered message is the floor under natter's at this design.
func runRawPipeline(ctx context.Context, e *env) (*Report, error) {
	cfg := e.cfg
	r := e.newReport("raw-pipeline", map[string]any{
		"pairs": cfg.Pairs, "rate_per_sender": cfg.Rate, "size": cfg.Size, "fsync": cfg.Fsync, "warmup": cfg.Warmup.String(),
		"server": "in-process (its CPU is the bench's)", "without": strings.Join(cfg.Without, ","),
	})
	dir, err := os.MkdirTemp("", "natter-bench-pipeline-")
	if err != nil {
		return nil, fmt.Errorf("make store directory: %w", err)
	}
	defer os.RemoveAll(dir)
	def := config.Default()
	node, err := natsnode.Start(natsnode.Options{StoreDir: dir, SyncAlways: cfg.Fsync == config.FsyncAlways, SyncInterval: def.SyncInterval})
	if err != nil {
		return nil, err
	}
	defer node.Shutdown()
	nc, err := node.Connect("natter-bench")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	if err := streams.Ensure(ctx, js, streams.Setup{
		Limits: streams.Limits{Replicas: 1, ConvMaxAge: def.ConvRetention, InboxMaxAge: def.InboxRetention,
			MaxBytes: def.StreamMaxBytes, DuplicateWindow: def.DuplicateWindow},
		Tuning:   streams.ConsumerTuning{MaxAckPending: def.MaxAckPending, MaxDeliver: def.MaxDeliver, AckWait: def.AckWait},
		TokenTTL: def.AccessTokenTTL,
	}); err != nil {
		return nil, err
	}

	base := time.Now()
	start := base.Add(200 * time.Millisecond)
	measureFrom, loadEnd := start.Add(cfg.Warmup), start.Add(cfg.Warmup+cfg.Duration)
	p := &pipeline{js: js, e: e, base: base, measureOff: int64(measureFrom.Sub(base)), acks: NewRecorder(), deliveries: NewRecorder(),
		ownCopy: !slices.Contains(cfg.Without, "own-copy"), expectedSeq: !slices.Contains(cfg.Without, "expected-seq")}
	consumers := []string{streams.ConsumerFanout}
	if !slices.Contains(cfg.Without, "persist") {
		consumers = append(consumers, streams.ConsumerPersist)
	}

	// The peers' live subscriptions, each read by its own goroutine as a
	// session's writer reads its channel.
	var readers sync.WaitGroup
	readCtx, stopReaders := context.WithCancel(ctx)
	defer func() { stopReaders(); readers.Wait() }()
	for i := range cfg.Pairs {
		for _, user := range []string{pipelineUser("a", i), pipelineUser("b", i)} {
			ch := make(chan *nats.Msg, 64)
			sub, err := nc.ChanSubscribe(streams.DeliverFilter(user), ch)
			if err != nil {
				return nil, fmt.Errorf("subscribe %s: %w", user, err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			peer := strings.HasPrefix(user, "b")
			readers.Go(func() { p.read(readCtx, ch, peer) })
		}
	}
	for _, name := range consumers {
		cons, err := js.Consumer(ctx, streams.StreamConv, name)
		if err != nil {
			return nil, fmt.Errorf("open consumer %s: %w", name, err)
		}
		handle := p.fanout
		if name == streams.ConsumerPersist {
			handle = p.persist
		}
		readers.Go(func() { p.consume(readCtx, cons, handle) })
	}

	self := e.watchSelf()
	stop := e.progress(ctx, func(elapsed time.Duration) string {
		return fmt.Sprintf("raw-pipeline %3.0fs  sent %d  acked %d  delivered %d  p99 ack %s  delivery %s",
			elapsed.Seconds(), p.sent.Load(), p.acked.Load(), p.delivered.Load(), windowP99(p.acks), windowP99(p.deliveries))
	})
	defer stop()
	var senders sync.WaitGroup
	for i := range cfg.Pairs {
		senders.Go(func() { p.send(ctx, i, start, loadEnd, cfg.Rate, cfg.Size) })
	}
	if err := (realClock{}).SleepUntil(ctx, measureFrom); err != nil {
		return nil, err
	}
	self.restart()
	senders.Wait()
	r.Bench = self.stats()
	window := time.Since(measureFrom)
	_ = waitFor(ctx, cfg.Drain, func() bool { return p.delivered.Load() >= p.acked.Load() })

	r.Seconds = window.Seconds()
	m := &Messages{
		Offered: p.sent.Load(), Acked: p.acked.Load(), Failed: p.failed.Load(), Delivered: p.delivered.Load(),
		OfferedPerSec: perSec(p.sent.Load(), window), AckedPerSec: perSec(p.acked.Load(), window),
		DeliveredPerSec: perSec(p.delivered.Load(), window), Unacked: p.sent.Load() - p.acked.Load() - p.failed.Load(),
		Lost: max(p.acked.Load()-p.delivered.Load(), 0), Duplicates: p.duplicates.Load(),
	}
	m.Settled = m.Unacked == 0 && m.Lost == 0
	if r.Bench != nil && m.DeliveredPerSec > 0 {
		m.ServerCPUPerDeliveryUS = r.Bench.CPUPercent / 100 * 1e6 / m.DeliveredPerSec
	}
	r.Messages = m
	r.Latency.SendToAck = new(p.acks.Summary())
	r.Latency.SendToDelivery = new(p.deliveries.Summary())
	r.Errors = e.errs.Snapshot()
	return r, nil
}

func pipelineUser(side string, pair int) string { return side + strconv.Itoa(pair) }

// pipeline holds the raw pipeline's counters; the measured messages are
// those due at or after measureOff.
type pipeline struct {
	js         jetstream.JetStream
	e          *env
	base       time.Time
	measureOff int64

	// ownCopy and expectedSeq are false when --without leaves them out.
	ownCopy, expectedSeq bool

	sent, acked, failed, delivered, duplicates atomic.Int64
	acks, deliveries                           *Recorder
}

// send publishes pair i's messages as natter's Sequencer does, one at a
// time (the conversation's lock), open loop from a random phase.
func (p *pipeline) send(ctx context.Context, i int, start, end time.Time, rate float64, size int) {
	conv := "p" + strconv.Itoa(i)
	sender, peer := pipelineUser("a", i), pipelineUser("b", i)
	iv := time.Duration(float64(time.Second) / rate)
	var streamSeq uint64
	content := strings.Repeat("x", size)
	for n, due := 0, start.Add(rand.N(iv)); due.Before(end); n, due = n+1, due.Add(iv) {
		if err := (realClock{}).SleepUntil(ctx, due); err != nil {
			return
		}
		sent := int64(due.Sub(p.base))
		measured := sent >= p.measureOff
		rec := streams.MessageRecord{V: streams.RecordVersion, ConversationID: conv, Seq: int64(n + 1), SenderID: sender,
			RecipientID: peer, MessageType: "text", Content: content, ClientMessageID: conv + "-" + strconv.Itoa(n), ServerTS: time.Now().UnixMilli()}
		rec.MessageID = conv + ":" + strconv.Itoa(n+1)
		m := nats.NewMsg(streams.MsgSubject(conv))
		m.Data, _ = json.Marshal(rec)
		m.Header.Set(jetstream.MsgIDHeader, streams.DedupeID(sender, rec.ClientMessageID))
		if p.expectedSeq {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(streamSeq, 10))
		}
		m.Header.Set(streams.HeaderSeq, strconv.FormatInt(rec.Seq, 10))
		m.Header.Set(headerSent, strconv.FormatInt(sent, 10))
		if measured {
			p.sent.Add(1)
		}
		ack, err := p.js.PublishMsg(ctx, m)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.e.errs.Note(jsErrorCode(err), err.Error())
			if measured {
				p.failed.Add(1)
			}
			return // the expected seq is unknown now: this pair stops
		}
		streamSeq = ack.Sequence
		if measured {
			p.acked.Add(1)
			p.acks.Record(time.Since(p.base) - time.Duration(sent))
		}
	}
}

// consume hands batches to handle as natter's consumer runner does: one
// blocking receive, then whatever is already there; then acks each event.
func (p *pipeline) consume(ctx context.Context, cons jetstream.Consumer, handle func(context.Context, []jetstream.Msg) error) {
	const batchSize = 256
	ch := make(chan jetstream.Msg, batchSize)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case ch <- m:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxMessages(2*batchSize), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		p.e.errs.Note("js_consume", err.Error())
		return
	}
	defer cc.Stop()
	batch := make([]jetstream.Msg, 0, batchSize)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case m := <-ch:
			batch = append(batch, m)
		}
	fill:
		for len(batch) < batchSize {
			select {
			case m := <-ch:
				batch = append(batch, m)
			default:
				break fill
			}
		}
		if err := handle(ctx, batch); err != nil {
			if ctx.Err() == nil {
				p.e.errs.Note("handle", err.Error())
			}
			continue // redelivered after the ack wait
		}
		for _, m := range batch {
			_ = m.Ack()
		}
	}
}

// persist stands for natter's persist consumer without its store: the
// delivery and the ack are its JetStream traffic.
func (p *pipeline) persist(context.Context, []jetstream.Msg) error { return nil }

// fanout publishes each message's event to the sender's and the peer's
// inboxes, as natter's fanout does, and waits for every PubAck.
func (p *pipeline) fanout(ctx context.Context, batch []jetstream.Msg) error {
	futures := make([]jetstream.PubAckFuture, 0, 2*len(batch))
	for _, m := range batch {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		src := strconv.FormatUint(md.Sequence.Stream, 10)
		conv := strings.TrimPrefix(m.Subject(), streams.MsgSubject(""))
		i := strings.TrimPrefix(conv, "p")
		users := []string{"b" + i, "a" + i}
		if !p.ownCopy {
			users = users[:1]
		}
		for _, user := range users {
			ev := nats.NewMsg(streams.InboxSubject(user, streams.InboxMessages))
			ev.Data = m.Data()
			ev.Header.Set(streams.HeaderSource, src)
			ev.Header.Set(jetstream.MsgIDHeader, streams.InboxMessages+":"+src+":"+user)
			ev.Header.Set(headerSent, m.Headers().Get(headerSent))
			f, err := p.js.PublishMsgAsync(ev)
			if err != nil {
				return err
			}
			futures = append(futures, f)
		}
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// read takes one user's live events; a peer's are the deliveries counted.
func (p *pipeline) read(ctx context.Context, ch <-chan *nats.Msg, peer bool) {
	var last int64 // the last delivered send time: a repeat is a duplicate
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-ch:
			if !peer {
				continue
			}
			sent, err := strconv.ParseInt(m.Header.Get(headerSent), 10, 64)
			if err != nil || sent < p.measureOff {
				continue
			}
			if sent <= last {
				p.duplicates.Add(1)
				continue
			}
			last = sent
			p.delivered.Add(1)
			p.deliveries.Record(time.Since(p.base) - time.Duration(sent))
		}
	}
}
