//go:build torture

package torture

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
)

// Connection churn: what a public server sees all day from clients on bad
// networks, scanners and reconnect storms.
const (
	churnWorkers   = 32  // concurrent churning clients
	churnAddresses = 200 // 127.0.0.2 and up, each a distinct client
	churnUsers     = 24  // accounts the churning WebSockets log in as
	churnSenders   = 3   // real users sending, each to their own peer
	churnRate      = 10  // messages per second per real sender
)

// TestConnectionChurn runs, for -torture.duration, 32 churning clients
// from 200 loopback addresses (127.0.0.2 and up, each a distinct client):
// WebSockets that connect, sync and go (some with a close frame, some by
// dropping TCP), one-shot HTTP requests, connections closed before any
// request, keep-alive connections left idle past the idle timeout, and
// request bodies sent a byte at a time, while real users send at a
// steady rate over WebSocket. The promises: the real users' delivery p99
// stays under 100 ms, nothing they had acknowledged is lost or doubled,
// and new connections are served afterwards.
func TestConnectionChurn(t *testing.T) {
	f := newFigures(t, "connection-churn")
	ctx, cancel := context.WithTimeout(context.Background(), *duration+5*time.Minute)
	defer cancel()
	// Rate limits stay on: the per-address caps are part of what churn
	// meets. Idle keep-alives are closed after 5 s, as a public
	// deployment would set it.
	node := testnode.Start(t, testnode.Options{RateLimit: true, Flags: []string{"--http-idle-timeout", "5s"}})
	addr := node.Addr()
	rest := node.Client()
	defer rest.Close()

	// Accounts, registered from several addresses (login and register are
	// limited per address).
	clientFrom := func(i int) *testnode.Client {
		return testnode.NewClient("http://"+addr, testnode.ClientOptions{SourceIP: fmt.Sprintf("127.0.1.%d", 1+i%100)})
	}
	var churnTokens []string
	for i := range churnUsers {
		c := clientFrom(i)
		_, ds, err := c.NewUser(ctx, fmt.Sprintf("churn%02d", i), password, 1)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		churnTokens = append(churnTokens, ds[0].Access)
	}
	type pair struct {
		send, recv *testnode.WS
		peer       testnode.User
		sender     testnode.Device
	}
	pairs := make([]pair, churnSenders)
	for i := range pairs {
		c := clientFrom(churnUsers + 2*i)
		_, sd, err := c.NewUser(ctx, fmt.Sprintf("sender%d", i), password, 1)
		if err != nil {
			t.Fatal(err)
		}
		peer, rd, err := c.NewUser(ctx, fmt.Sprintf("peer%d", i), password, 1)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		p := pair{peer: peer, sender: sd[0]}
		for _, x := range []struct {
			ws  **testnode.WS
			tok string
		}{{&p.send, sd[0].Access}, {&p.recv, rd[0].Access}} {
			ws, _, err := node.Dial(ctx, x.tok, testnode.DialOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			if _, err := ws.WaitSynced(ctx); err != nil {
				t.Fatal(err)
			}
			*x.ws = ws
		}
		pairs[i] = p
	}

	// The churn.
	var (
		counts   sync.Map // action/outcome -> *atomic.Int64
		churnErr atomic.Int64
	)
	count := func(k string) {
		v, _ := counts.LoadOrStore(k, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	churnCtx, stopChurn := context.WithCancel(ctx)
	defer stopChurn()
	var churners sync.WaitGroup
	for w := range churnWorkers {
		churners.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for churnCtx.Err() == nil {
				from := fmt.Sprintf("127.0.0.%d", 2+rng.IntN(churnAddresses))
				action, outcome := churnOnce(churnCtx, rng, addr, from, churnTokens[rng.IntN(len(churnTokens))])
				count(action + "/" + outcome)
				if outcome == "error" {
					churnErr.Add(1)
				}
			}
		})
	}

	// The real users: each sender sends churnRate messages a second,
	// timed from just before the frame is written to the peer's read.
	type sent struct {
		at  time.Time
		ack bool
	}
	var sentMu sync.Mutex
	sends := make([]map[string]*sent, churnSenders)
	var senders sync.WaitGroup
	loadEnd := time.Now().Add(*duration)
	for i := range pairs {
		sends[i] = map[string]*sent{}
		senders.Go(func() {
			p := pairs[i]
			tick := time.NewTicker(time.Second / churnRate)
			defer tick.Stop()
			for n := 0; time.Now().Before(loadEnd); n++ {
				<-tick.C
				cmid := fmt.Sprintf("s%d-%d", i, n)
				sentMu.Lock()
				sends[i][cmid] = &sent{at: time.Now()}
				sentMu.Unlock()
				if err := p.send.SendMessage(ctx, testnode.NewSend(cmid, p.peer.ID, "steady "+cmid)); err != nil {
					t.Errorf("sender %d: %v", i, err)
					return
				}
			}
		})
	}
	senders.Wait()
	stopChurn()
	churners.Wait()

	// Every acknowledged message reached its peer once; delivery latency
	// over all of them.
	var lat []time.Duration
	acked, lost, doubled, refused := 0, 0, 0, 0
	for i, p := range pairs {
		total := len(sends[i])
		acks, err := p.send.WaitN(ctx, 0, total, func(f testnode.Frame) bool {
			return (f.Type == "ack" || f.Type == "error") && strings.HasPrefix(f.Ref, fmt.Sprintf("s%d-", i))
		})
		if err != nil {
			t.Fatalf("sender %d: %d answers of %d: %v", i, len(acks), total, err)
		}
		for _, a := range acks {
			if a.Type == "ack" {
				sends[i][a.Ref].ack = true
				acked++
			} else {
				refused++
				t.Errorf("sender %d: %s refused: %s", i, a.Ref, a.Raw)
			}
		}
		want := 0
		for _, s := range sends[i] {
			if s.ack {
				want++
			}
		}
		if _, err := p.recv.WaitN(ctx, 0, want, func(f testnode.Frame) bool { return f.Type == "message" }); err != nil {
			t.Errorf("peer %d: %v", i, err)
		}
		seen := map[string]int{}
		for _, fr := range p.recv.Frames(0) {
			if fr.Type != "message" {
				continue
			}
			seen[fr.ClientMessageID]++
			if s := sends[i][fr.ClientMessageID]; s != nil && seen[fr.ClientMessageID] == 1 {
				lat = append(lat, fr.At.Sub(s.at))
			}
		}
		for cmid, s := range sends[i] {
			switch {
			case s.ack && seen[cmid] == 0:
				lost++
			case seen[cmid] > 1:
				doubled++
			}
		}
	}
	slices.Sort(lat)
	p50, p99, worst := percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
	f.add("duration", *duration)
	f.add("real_senders", churnSenders)
	f.add("acked", acked)
	f.expect("refused", refused, 0)
	f.expect("lost", lost, 0)
	f.expect("doubled", doubled, 0)
	f.add("delivery_p50", p50)
	f.goal("delivery_p99", p99, "< 100ms")
	f.add("delivery_max", worst)
	var keys []string
	var churned int64
	counts.Range(func(k, v any) bool {
		keys = append(keys, k.(string))
		churned += v.(*atomic.Int64).Load()
		return true
	})
	slices.Sort(keys)
	for _, k := range keys {
		v, _ := counts.Load(k)
		f.add("churn_"+strings.ReplaceAll(k, "/", "_"), v.(*atomic.Int64).Load())
	}
	f.add("churn_total", churned)
	f.add("churn_per_second", int(float64(churned)/duration.Seconds()))
	if acked < churnSenders*churnRate*int(duration.Seconds())*9/10 {
		t.Errorf("only %d messages acknowledged at %d/s for %v", acked, churnSenders*churnRate, *duration)
	}
	if p99 >= 100*time.Millisecond {
		t.Errorf("delivery p99 %v under churn, want < 100ms", p99)
	}
	if churnErr.Load() > churned/100 {
		t.Errorf("%d of %d churn connections failed in ways a server must not cause", churnErr.Load(), churned)
	}

	// Afterwards: a new client from a new address is served at once.
	fresh := testnode.NewClient("http://"+addr, testnode.ClientOptions{SourceIP: "127.0.2.1"})
	defer fresh.Close()
	if code := healthz("http://"+addr, "127.0.2.2"); code != http.StatusOK {
		t.Fatalf("/healthz after the churn: %d", code)
	}
	_, nd, err := fresh.NewUser(ctx, "newcomer", password, 1)
	if err != nil {
		t.Fatalf("register and log in after the churn: %v", err)
	}
	ws, _, err := node.Dial(ctx, nd[0].Access, testnode.DialOptions{SourceIP: "127.0.2.3"})
	if err != nil {
		t.Fatalf("WebSocket after the churn: %v", err)
	}
	defer ws.Close()
	if _, err := ws.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Send(ctx, nd[0].Access, testnode.NewSend("hello", pairs[0].peer.ID, "after the churn")); err != nil {
		t.Fatalf("send after the churn: %v", err)
	}
	if _, _, err := pairs[0].recv.Wait(ctx, 0, func(f testnode.Frame) bool { return f.ClientMessageID == "hello" }); err != nil {
		t.Fatalf("delivery after the churn: %v", err)
	}
	f.goal("served_after", true, "true")
}

// churnOnce does one churning client's visit from address from and
// names it and its outcome: "ok", "refused" (an answer the server may
// give a churning client: 429, 503, a close by its timeouts) or "error"
// (one it must not: a failed dial, a reset before any answer).
func churnOnce(ctx context.Context, rng *rand.Rand, addr, from, token string) (action, outcome string) {
	switch n := rng.IntN(10); {
	case n < 3:
		return "ws", churnWS(ctx, rng, addr, from, token)
	case n < 6:
		return "http", churnHTTP(addr, from, token)
	case n < 8:
		return "tcp", churnTCP(addr, from)
	case n < 9:
		return "idle", churnIdle(ctx, rng, addr, from)
	default:
		return "slowbody", churnSlowBody(ctx, addr, from)
	}
}

// churnWS connects, waits for synced, pings, and leaves with a close
// frame or by dropping the TCP connection.
func churnWS(ctx context.Context, rng *rand.Rand, addr, from, token string) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	ws, res, err := testnode.Dial(ctx, testnode.WSURL(addr, token, testnode.DialOptions{}), token, testnode.DialOptions{SourceIP: from, HandshakeTimeout: 10 * time.Second})
	if err != nil {
		if res != nil && (res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable) {
			return "refused"
		}
		if ctx.Err() != nil {
			return "ok" // the test ended
		}
		return "error"
	}
	defer ws.Close()
	if _, err := ws.WaitSynced(ctx); err != nil {
		if ctx.Err() != nil {
			return "ok"
		}
		return "error"
	}
	if rng.IntN(2) == 0 {
		_ = ws.Send(ctx, map[string]any{"type": "ping", "ref": "p"})
		_, _, _ = ws.Wait(ctx, 0, testnode.IsType("pong"))
	}
	if rng.IntN(2) == 0 {
		_ = ws.CloseGracefully(1000)
	}
	return "ok"
}

// churnHTTP makes one authenticated request on a connection of its own.
func churnHTTP(addr, from, token string) string {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext,
		DisableKeepAlives: true,
	}}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		return "error"
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
		return "ok"
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return "refused"
	}
	return "error"
}

// churnTCP opens a connection and closes it without a request.
func churnTCP(addr, from string) string {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "error"
	}
	c.Close()
	return "ok"
}

// churnIdle makes one request on a keep-alive connection and leaves it
// idle for up to 8 s (past the server's 5 s idle timeout, at times).
func churnIdle(ctx context.Context, rng *rand.Rand, addr, from string) string {
	c, code := idleConn(addr, from)
	if c == nil {
		return "error"
	}
	defer c.Close()
	if code != http.StatusOK {
		return "refused"
	}
	t := time.NewTimer(time.Duration(500+rng.IntN(7500)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return "ok"
}

// churnSlowBody sends a refresh request whose body comes a byte every
// 200 ms and gives up after 2 s, as a slowloris would (or the server's
// body timeout ends it first).
func churnSlowBody(ctx context.Context, addr, from string) string {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "error"
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "POST /v1/auth/refresh HTTP/1.1\r\nHost: natter\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		return "refused"
	}
	for range 10 {
		select {
		case <-ctx.Done():
			return "ok"
		case <-time.After(200 * time.Millisecond):
		}
		if _, err := io.WriteString(c, " "); err != nil {
			return "refused" // the server's body timeout closed it
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if res, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusRequestTimeout {
			return "refused"
		}
	}
	return "ok"
}
