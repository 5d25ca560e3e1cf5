//go:build torture

package torture

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
)

// msgKey identifies a message: (conversation_id, seq).
type msgKey struct {
	conv string
	seq  int64
}

// pending is a message a client made and holds no ack for yet.
type pending struct {
	req    testnode.SendRequest
	sentOn *testnode.WS // the connection it was last written to; nil: (re)send it
}

// event is a durable message event as a device processed it.
type event struct {
	key             msgKey
	messageID, cmid string
	senderID        string
	cursor          string
	conn            int // which connection of the device carried it (1, 2, ...)
}

// connLog is what one connection sent, in order, and the fresh acks it
// got: sends on one connection to one conversation must get their seqs in
// send order.
type connLog struct {
	sent []string                // client_message_ids in write order
	acks map[string]testnode.Ack // first-time (duplicate:false) acks
}

// service tracks when any client last got an ack, to find the longest
// time without service.
type service struct {
	last    atomic.Int64 // unix nanoseconds of the last ack
	longest atomic.Int64 // nanoseconds
}

func (s *service) acked() { s.last.Store(time.Now().UnixNano()) }

// watch samples the time since the last ack until ctx ends.
func (s *service) watch(ctx context.Context) {
	s.acked()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if gap := now.UnixNano() - s.last.Load(); gap > s.longest.Load() {
				s.longest.Store(gap)
			}
		}
	}
}

// loadClient is one device the way a careful app drives it: it keeps an
// outbox of messages without an ack and writes them again (same
// client_message_id) on every new connection; it reconnects with the
// cursor of the last event it processed; it records every event.
type loadClient struct {
	name  string
	node  *testnode.Node
	dev   testnode.Device
	peers []testnode.User // whom it writes to; none: it only reads
	svc   *service
	// nodes, when set, is a cluster: the client dials nodes[at], and
	// moves to the next one when a dial fails or the server says 1001
	// (going away: reconnect elsewhere).
	nodes []*testnode.Node
	at    int

	mu          sync.Mutex
	ws          *testnode.WS // current connection, nil while disconnected
	conn        *connLog
	cursor      string // the last event processed, or the last synced cursor
	firstCursor string // synced cursor of the first connection
	outbox      []*pending
	made        int                     // messages made (the offered load)
	to          map[string]string       // client_message_id -> recipient id
	written     int                     // send frames written, retries included
	acks        map[string]testnode.Ack // first ack per client_message_id
	dupAcks     int                     // acks with duplicate:true
	ackMismatch int                     // a later ack that differs from the first
	refused     map[string]int          // sends refused for good, by code
	retryable   map[string]int          // send errors answered by a retry, by code
	events      []event                 // durable message events, in processing order
	connects    int
	dialFails   int
	connRefused map[string]int // connections closed before synced, by error code
	closes      map[string]int // connections closed by the server, by close code
	orderErrors []string       // acks out of send order on one connection
	lastAck     time.Time      // when the last ack came
	longestGap  time.Duration  // the longest time between two acks (or the first one and the start)
}

func newLoadClient(name string, node *testnode.Node, dev testnode.Device, peers []testnode.User, svc *service) *loadClient {
	return &loadClient{name: name, node: node, dev: dev, peers: peers, svc: svc,
		acks: map[string]testnode.Ack{}, to: map[string]string{}, refused: map[string]int{}, retryable: map[string]int{}, connRefused: map[string]int{}, closes: map[string]int{}}
}

// connect opens the first connection and waits for synced, so the
// client's first cursor precedes every message of the test.
func (c *loadClient) connect(ctx context.Context) error {
	ws, _, err := c.node.Dial(ctx, c.dev.Access, testnode.DialOptions{})
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	f, err := ws.WaitSynced(ctx)
	ws.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	c.mu.Lock()
	c.cursor, c.firstCursor = f.Cursor, f.Cursor
	c.mu.Unlock()
	return nil
}

// run keeps the client connected until ctx ends.
func (c *loadClient) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		c.mu.Lock()
		cursor := c.cursor
		c.mu.Unlock()
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ws, _, err := c.target().Dial(dctx, c.dev.Access, testnode.DialOptions{Cursor: cursor, HandshakeTimeout: 10 * time.Second})
		cancel()
		if err != nil {
			c.mu.Lock()
			c.dialFails++
			c.moveOn()
			c.mu.Unlock()
			sleep(ctx, backoff/2+rand.N(backoff))
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		c.serve(ctx, ws)
		ws.Close()
		if code, _ := ws.CloseCode(); code == 1001 {
			c.mu.Lock()
			c.moveOn()
			c.mu.Unlock()
		}
	}
}

// target is the node to dial: the client's own, or its cluster's
// current one.
func (c *loadClient) target() *testnode.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.nodes) > 0 {
		return c.nodes[c.at]
	}
	return c.node
}

// moveOn turns a cluster client to the next node; c.mu is held.
func (c *loadClient) moveOn() {
	if len(c.nodes) > 0 {
		c.at = (c.at + 1) % len(c.nodes)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// serve processes one connection's frames until it ends.
func (c *loadClient) serve(ctx context.Context, ws *testnode.WS) {
	log := &connLog{acks: map[string]testnode.Ack{}}
	c.mu.Lock()
	c.ws, c.conn = ws, log
	c.connects++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.ws, c.conn = nil, nil
		c.checkOrder(log)
		c.mu.Unlock()
	}()
	synced := false
	for i := 0; ; i++ {
		f, idx, err := ws.Wait(ctx, i, func(testnode.Frame) bool { return true })
		if err != nil {
			if code, _ := ws.CloseCode(); code != 0 {
				c.mu.Lock()
				c.closes[fmt.Sprint(code)]++
				c.mu.Unlock()
			}
			return
		}
		i = idx
		c.mu.Lock()
		switch {
		case f.Type == "synced":
			synced = true
			c.cursor = f.Cursor
		case f.Type == "message" && f.Durable():
			c.events = append(c.events, event{key: msgKey{f.ConversationID, f.Seq}, messageID: f.MessageID, cmid: f.ClientMessageID,
				senderID: f.SenderID, cursor: f.Cursor, conn: c.connects})
			c.cursor = f.Cursor
		case f.Durable():
			c.cursor = f.Cursor
		case f.Type == "ack":
			c.ack(f, log)
		case f.Type == "error" && f.Ref == "" && !synced:
			c.connRefused[fmt.Sprintf("%d %s", f.ErrorStatus(), f.Code)]++
		case f.Type == "error":
			c.sendError(f)
		}
		c.mu.Unlock()
	}
}

// ack records an ack; c.mu is held.
func (c *loadClient) ack(f testnode.Frame, log *connLog) {
	a := f.Ack()
	if first, ok := c.acks[a.ClientMessageID]; ok {
		if first.MessageID != a.MessageID || first.Seq != a.Seq || first.ConversationID != a.ConversationID || first.ServerTS != a.ServerTS {
			c.ackMismatch++
		}
	} else {
		c.acks[a.ClientMessageID] = a
	}
	if a.Duplicate {
		c.dupAcks++
	} else if _, ok := log.acks[a.ClientMessageID]; !ok {
		log.acks[a.ClientMessageID] = a
	}
	for i, p := range c.outbox {
		if p.req.ClientMessageID == a.ClientMessageID {
			c.outbox = append(c.outbox[:i], c.outbox[i+1:]...)
			break
		}
	}
	if c.svc != nil {
		c.svc.acked()
	}
	now := time.Now()
	if !c.lastAck.IsZero() {
		c.longestGap = max(c.longestGap, now.Sub(c.lastAck))
	}
	c.lastAck = now
}

// sendError handles a refused send; c.mu is held. 503 and 429 are
// retried on the next tick; anything else is a refusal for good.
func (c *loadClient) sendError(f testnode.Frame) {
	key := fmt.Sprintf("%d %s", f.ErrorStatus(), f.Code)
	for i, p := range c.outbox {
		if p.req.ClientMessageID != f.Ref {
			continue
		}
		if s := f.ErrorStatus(); s == http.StatusServiceUnavailable || s == http.StatusTooManyRequests {
			c.retryable[key]++
			p.sentOn = nil
		} else {
			c.refused[key]++
			c.outbox = append(c.outbox[:i], c.outbox[i+1:]...)
		}
		return
	}
}

// checkOrder counts fresh acks of one connection whose seq is not above
// the previous fresh ack's in the same conversation, in send order;
// c.mu is held. A send answered 503 or 429 and written again on the same
// connection is placed at its last write: its ack answers that one.
func (c *loadClient) checkOrder(log *connLog) {
	lastWrite := map[string]int{}
	for i, cmid := range log.sent {
		lastWrite[cmid] = i
	}
	last := map[string]int64{}
	for i, cmid := range log.sent {
		a, ok := log.acks[cmid]
		if !ok || lastWrite[cmid] != i {
			continue
		}
		if a.Seq <= last[a.ConversationID] {
			c.orderErrors = append(c.orderErrors, fmt.Sprintf("%s: %s got seq %d after seq %d on one connection", c.name, cmid, a.Seq, last[a.ConversationID]))
		}
		last[a.ConversationID] = a.Seq
	}
}

// generate makes a message every interval while making is true (the open
// loop: whatever the acks), and on every tick writes whatever the outbox
// holds that the current connection has not carried yet.
func (c *loadClient) generate(ctx context.Context, interval time.Duration, making *atomic.Bool, content func(cmid string) string) {
	// Start at a random phase so clients do not tick in step.
	sleep(ctx, rand.N(interval))
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		if making.Load() && len(c.peers) > 0 {
			cmid := fmt.Sprintf("%s-%d", c.name, c.made)
			c.made++
			to := c.peers[rand.N(len(c.peers))]
			c.to[cmid] = to.ID
			c.outbox = append(c.outbox, &pending{req: testnode.NewSend(cmid, to.ID, content(cmid))})
		}
		ws, log := c.ws, c.conn
		var batch []testnode.SendRequest
		if ws != nil {
			for _, p := range c.outbox {
				if p.sentOn != ws {
					p.sentOn = ws
					batch = append(batch, p.req)
					log.sent = append(log.sent, p.req.ClientMessageID)
				}
			}
		}
		c.mu.Unlock()
		for _, req := range batch {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := ws.SendMessage(sctx, req)
			cancel()
			if err != nil {
				break // the connection is gone; the next one carries the rest
			}
			c.mu.Lock()
			c.written++
			c.mu.Unlock()
		}
	}
}

func (c *loadClient) outboxLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.outbox)
}

// has reports whether the client processed an event for every key.
func (c *loadClient) has(keys map[msgKey]bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[msgKey]bool, len(c.events))
	for _, e := range c.events {
		seen[e.key] = true
	}
	for k := range keys {
		if !seen[k] {
			return false
		}
	}
	return true
}

// replay connects dev from cursor and returns the durable events up to
// synced, resuming from the last one when the server cuts the
// connection for reading too slowly (4029), as the contract says.
func replay(ctx context.Context, node *testnode.Node, dev testnode.Device, cursor string) ([]testnode.Frame, error) {
	var out []testnode.Frame
	for cut := 0; ; cut++ {
		ws, _, err := node.Dial(ctx, dev.Access, testnode.DialOptions{Cursor: cursor})
		if err != nil {
			return out, err
		}
		_, serr := ws.WaitSynced(ctx)
		ws.Close()
		for _, f := range ws.Frames(0) {
			if f.Type == "synced" {
				break
			}
			if f.Durable() {
				out = append(out, f)
				cursor = f.Cursor
			}
		}
		if serr == nil {
			return out, nil
		}
		if code, _ := ws.CloseCode(); code != 4029 || cut > 100 {
			return out, fmt.Errorf("replay from %s: %w", cursor, serr)
		}
	}
}

// deliveryCheck counts, over one device's events in processing order,
// message events seen twice, out of seq order or after a skipped seq of
// their conversation, and the expected ones never seen.
type deliveryCheck struct {
	duplicates, outOfOrder, skipped, missing int
	examples                                 []string
}

func checkDelivery(who string, evs []event, expected map[msgKey]bool) deliveryCheck {
	var d deliveryCheck
	note := func(format string, args ...any) {
		if len(d.examples) < 5 {
			d.examples = append(d.examples, who+": "+fmt.Sprintf(format, args...))
		}
	}
	seen := map[msgKey]event{}
	last := map[string]int64{}
	for _, e := range evs {
		prev, dup := seen[e.key]
		switch l := last[e.key.conv]; {
		case dup:
			d.duplicates++
			note("%s/%d delivered twice: cursor %s on connection %d, then cursor %s on connection %d",
				e.key.conv, e.key.seq, prev.cursor, prev.conn, e.cursor, e.conn)
		case e.key.seq < l:
			d.outOfOrder++
			note("%s: seq %d after seq %d", e.key.conv, e.key.seq, l)
		case e.key.seq > l+1:
			d.skipped++
			note("%s: seq %d right after seq %d", e.key.conv, e.key.seq, l)
		}
		seen[e.key] = e
		last[e.key.conv] = max(last[e.key.conv], e.key.seq)
	}
	for k := range expected {
		if _, ok := seen[k]; !ok {
			d.missing++
			note("%s/%d never delivered", k.conv, k.seq)
		}
	}
	return d
}

func (d *deliveryCheck) add(o deliveryCheck) {
	d.duplicates += o.duplicates
	d.outOfOrder += o.outOfOrder
	d.skipped += o.skipped
	d.missing += o.missing
	if len(d.examples) < 10 {
		d.examples = append(d.examples, o.examples...)
	}
}

func framesToEvents(fs []testnode.Frame) []event {
	var out []event
	for _, f := range fs {
		if f.Type == "message" {
			out = append(out, event{key: msgKey{f.ConversationID, f.Seq}, messageID: f.MessageID, cmid: f.ClientMessageID,
				senderID: f.SenderID, cursor: f.Cursor})
		}
	}
	return out
}

// ledger is the union of what a set of clients made and was acked.
type ledger struct {
	made, written, dupAcks, ackMismatch int
	acks                                map[string]ackOf // sender id + "/" + cmid
	madeIDs                             map[string]bool  // sender id + "/" + cmid of every message made
	refused, retryable, connRefused     map[string]int
	closes                              map[string]int
	orderErrors                         []string
	connects, dialFails                 int
}

type ackOf struct {
	testnode.Ack
	senderID, recipientID string
}

func collect(clients []*loadClient) ledger {
	l := ledger{acks: map[string]ackOf{}, madeIDs: map[string]bool{}, refused: map[string]int{}, retryable: map[string]int{}, connRefused: map[string]int{}, closes: map[string]int{}}
	for _, c := range clients {
		c.mu.Lock()
		l.made += c.made
		l.written += c.written
		l.dupAcks += c.dupAcks
		l.ackMismatch += c.ackMismatch
		l.connects += c.connects
		l.dialFails += c.dialFails
		l.orderErrors = append(l.orderErrors, c.orderErrors...)
		for k, v := range c.refused {
			l.refused[k] += v
		}
		for k, v := range c.retryable {
			l.retryable[k] += v
		}
		for k, v := range c.connRefused {
			l.connRefused[k] += v
		}
		for k, v := range c.closes {
			l.closes[k] += v
		}
		for cmid, a := range c.acks {
			l.acks[c.dev.ID+"/"+cmid] = ackOf{Ack: a, senderID: c.dev.ID, recipientID: c.to[cmid]}
		}
		for cmid := range c.to {
			l.madeIDs[c.dev.ID+"/"+cmid] = true
		}
		c.mu.Unlock()
	}
	return l
}

// expectedFor is every acked message a user takes part in.
func (l ledger) expectedFor(userID string) map[msgKey]bool {
	out := map[msgKey]bool{}
	for _, a := range l.acks {
		if a.senderID == userID || a.recipientID == userID {
			out[msgKey{a.ConversationID, a.Seq}] = true
		}
	}
	return out
}

// historyCheck reads back every conversation of the ledger and compares.
type historyCheck struct {
	conversations, stored        int
	lost, mismatched, duplicates int
	gaps, phantoms               int
	examples                     []string
	byKey                        map[msgKey]testnode.Message
}

func checkHistory(ctx context.Context, c *testnode.Client, l ledger, tokens map[string]string) (historyCheck, error) {
	h := historyCheck{byKey: map[msgKey]testnode.Message{}}
	note := func(format string, args ...any) {
		if len(h.examples) < 10 {
			h.examples = append(h.examples, fmt.Sprintf(format, args...))
		}
	}
	convs := map[string]string{} // conversation -> a participant's token
	for _, a := range l.acks {
		convs[a.ConversationID] = tokens[a.senderID]
	}
	h.conversations = len(convs)
	for conv, token := range convs {
		msgs, err := c.History(ctx, token, conv)
		if err != nil {
			return h, fmt.Errorf("history of %s: %w", conv, err)
		}
		h.stored += len(msgs)
		bySeq := map[int64]int{}
		byCmid := map[string]int{}
		var top int64
		for _, m := range msgs {
			bySeq[m.Seq]++
			byCmid[m.SenderID+"/"+m.ClientMessageID]++
			top = max(top, m.Seq)
			h.byKey[msgKey{conv, m.Seq}] = m
			if !l.madeIDs[m.SenderID+"/"+m.ClientMessageID] {
				h.phantoms++
				note("%s/%d: %s/%s was never sent", conv, m.Seq, m.SenderID, m.ClientMessageID)
			}
		}
		for s := int64(1); s <= top; s++ {
			switch n := bySeq[s]; {
			case n == 0:
				h.gaps++
				note("%s: no seq %d (top %d)", conv, s, top)
			case n > 1:
				h.duplicates += n - 1
				note("%s: seq %d stored %d times", conv, s, n)
			}
		}
		for id, n := range byCmid {
			if n > 1 {
				h.duplicates += n - 1
				note("%s: %s stored %d times", conv, id, n)
			}
		}
	}
	for id, a := range l.acks {
		m, ok := h.byKey[msgKey{a.ConversationID, a.Seq}]
		switch {
		case !ok:
			h.lost++
			note("acked %s (%s) is not in history", id, a.MessageID)
		case m.MessageID != a.MessageID || m.SenderID+"/"+m.ClientMessageID != id || m.ServerTS != a.ServerTS:
			h.mismatched++
			note("acked %s as %s, history holds %s/%s (%s) there", id, a.MessageID, m.SenderID, m.ClientMessageID, m.MessageID)
		}
	}
	return h, nil
}

// sendAll writes reqs on ws keeping at most window of them without an
// answer, and returns the answers (acks and errors) in arrival order.
func sendAll(ctx context.Context, ws *testnode.WS, reqs []testnode.SendRequest, window int) ([]testnode.Frame, error) {
	refs := make(map[string]bool, len(reqs))
	for _, r := range reqs {
		refs[r.ClientMessageID] = true
	}
	answer := func(f testnode.Frame) bool { return (f.Type == "ack" || f.Type == "error") && refs[f.Ref] }
	var answers []testnode.Frame
	next := ws.Len()
	// awaitAnswers waits until n answers came, scanning each frame once.
	awaitAnswers := func(n int) error {
		for len(answers) < n {
			f, idx, err := ws.Wait(ctx, next, answer)
			if err != nil {
				return err
			}
			answers, next = append(answers, f), idx+1
		}
		return nil
	}
	for i, r := range reqs {
		if err := awaitAnswers(i - window + 1); err != nil {
			return answers, err
		}
		if err := ws.SendMessage(ctx, r); err != nil {
			return answers, err
		}
	}
	return answers, awaitAnswers(len(reqs))
}
