package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/internal/testnode"
	"github.com/natter-chat/natter/natsnode"
	"github.com/natter-chat/natter/streams"
)

// The cluster tests run three natter processes whose embedded NATS
// servers form one JetStream cluster, on one PostgreSQL database
// (cluster mode needs a shared store, so they skip without
// NATTER_TEST_POSTGRES_URL). One cluster serves every subtest, each
// with users of its own, to keep the suite's time sane.

// clusterOf starts n nodes, counting them against the suite's cap on
// processes, and returns a server per node for the usual helpers.
func clusterOf(t *testing.T, n int, launch func() *testnode.Cluster) (*testnode.Cluster, []*server) {
	t.Helper()
	if os.Getenv(testnode.PostgresEnv) == "" {
		t.Skipf("cluster mode needs a shared store: set %s", testnode.PostgresEnv)
	}
	for range n {
		servers <- struct{}{}
		t.Cleanup(func() { <-servers })
	}
	c := launch()
	var ss []*server
	for _, nd := range c.Nodes() {
		cl := nd.Client()
		t.Cleanup(cl.Close)
		ss = append(ss, &server{t: t, node: nd, client: cl, addr: nd.Addr()})
	}
	return c, ss
}

// on returns s bound to subtest t (its helpers fail t, not the parent).
func on(t *testing.T, s *server) *server {
	c := *s
	c.t = t
	return &c
}

func TestCluster(t *testing.T) {
	c, nodes := clusterOf(t, 3, func() *testnode.Cluster { return testnode.StartCluster(t, 3, testnode.Options{NATS: true}) })

	t.Run("forms with R3 streams and buckets", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		nc, err := nats.Connect(c.Node(1).NATSURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{streams.StreamConv, streams.StreamInbox, streams.StreamDeadLetter,
			"KV_" + streams.BucketSessions, "KV_" + streams.BucketPresence} {
			s, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatalf("stream %s: %v", name, err)
			}
			info := s.CachedInfo()
			if info.Config.Replicas != 3 {
				t.Errorf("stream %s has %d replicas, want 3", name, info.Config.Replicas)
			}
			if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
				t.Errorf("stream %s: cluster %+v, want a leader and 2 more replicas", name, info.Cluster)
			}
		}
		for _, name := range []string{streams.ConsumerPersist, streams.ConsumerFanout, streams.ConsumerReceipts, streams.ConsumerErase} {
			cons, err := js.Consumer(ctx, streams.StreamConv, name)
			if err != nil {
				t.Fatalf("consumer %s: %v", name, err)
			}
			if cfg := cons.CachedInfo().Config; cfg.PriorityPolicy != jetstream.PriorityPolicyPinned {
				t.Errorf("consumer %s: priority policy %v, want pinned (one node active)", name, cfg.PriorityPolicy)
			}
		}
		for i, s := range nodes {
			if n := len(s.node.Log()); n == 0 {
				t.Errorf("node %d logged nothing", i)
			}
			s.waitLog("cluster mode", 1)
		}
	})

	t.Run("devices on three nodes get every message once", func(t *testing.T) {
		a, b, cc := on(t, nodes[0]), on(t, nodes[1]), on(t, nodes[2])
		alice, ad := a.newUser("alice1", 1)
		bob := b.register("bob1")
		bd1, bd2 := b.login(bob), cc.login(bob)
		wa, _ := a.connect(ad[0], "")
		wb1, _ := b.connect(bd1, "")
		wb2, _ := cc.connect(bd2, "")
		const each = 20
		for k := range each {
			wa.sendWait(bob, fmt.Sprintf("a-%02d", k), "from alice")
			wb1.sendWait(alice, fmt.Sprintf("b-%02d", k), "from bob")
		}
		for _, w := range []*wsClient{wa, wb1, wb2} {
			msgs := w.waitN("messages", 2*each, isType("message"))
			exactlyOnceInOrder(t, w.name, msgs, 2*each)
		}
	})

	t.Run("concurrent senders through two nodes get gap-free seqs", func(t *testing.T) {
		a, b, cc := on(t, nodes[0]), on(t, nodes[1]), on(t, nodes[2])
		alice := a.register("alice2")
		da, db := a.login(alice), b.login(alice)
		bob := cc.register("bob2")
		dc := cc.login(bob)
		wc, _ := cc.connect(dc, "")
		const each = 200
		senders := []*wsClient{first(a.connect(da, "")), first(b.connect(db, ""))}
		var wg sync.WaitGroup
		for i, w := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range each {
					f := sendBody(fmt.Sprintf("c%d-%03d", i, k), bob.id, "concurrent")
					f["type"] = "send"
					if err := w.trySend(f); err != nil {
						t.Errorf("sender %d: %v", i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		seen := map[int64]string{}
		for i, w := range senders {
			var last int64
			for k, ack := range w.waitN("acks", each, func(f obj) bool { return f["type"] == "ack" || f["type"] == "error" }) {
				if ack["type"] != "ack" {
					t.Fatalf("sender %d: %v", i, ack)
				}
				// Sends on one connection to one conversation: seq in send order.
				if want := fmt.Sprintf("c%d-%03d", i, k); ack["client_message_id"] != want {
					t.Errorf("sender %d: ack %d is for %v, want %s", i, k, ack["client_message_id"], want)
				}
				seq := num(ack, "seq")
				if seq <= last {
					t.Errorf("sender %d: seq %d after %d", i, seq, last)
				}
				last = seq
				if prev, dup := seen[seq]; dup {
					t.Errorf("seq %d given to %s and %s", seq, prev, str(ack, "client_message_id"))
				}
				seen[seq] = str(ack, "client_message_id")
			}
		}
		for q := int64(1); q <= 2*each; q++ {
			if _, ok := seen[q]; !ok {
				t.Errorf("no message got seq %d", q)
			}
		}
		msgs := wc.waitN("messages", 2*each, isType("message"))
		exactlyOnceInOrder(t, "bob", msgs, 2*each)
		if h := cc.history(dc, str(msgs[0], "conversation_id")); len(h) != 2*each {
			t.Errorf("history holds %d messages, want %d", len(h), 2*each)
		}
	})

	t.Run("a retry through another node returns the original", func(t *testing.T) {
		a, b, cc := on(t, nodes[0]), on(t, nodes[1]), on(t, nodes[2])
		alice := a.register("alice3")
		da := a.login(alice)
		bob := b.register("bob3")
		orig := a.sendREST(da, bob, "retry-1", "the original")
		if orig["duplicate"] != false || num(orig, "seq") != 1 {
			t.Fatalf("first send: %v", orig)
		}
		// The same device's token works on every node (shared token.key).
		for i, s := range []*server{b, cc} {
			r := s.sendREST(da, bob, "retry-1", fmt.Sprintf("a retry through node %d", i+1))
			if r["duplicate"] != true || r["message_id"] != orig["message_id"] || num(r, "seq") != num(orig, "seq") {
				t.Errorf("retry through node %d: %v, want the original %v", i+1, r, orig)
			}
		}
		next := cc.sendREST(da, bob, "retry-2", "the next")
		if num(next, "seq") != 2 {
			t.Errorf("next message after retries has seq %d, want 2", num(next, "seq"))
		}
	})

	t.Run("a device resumes on another node from its cursor", func(t *testing.T) {
		a, b, cc := on(t, nodes[0]), on(t, nodes[1]), on(t, nodes[2])
		alice := a.register("alice4")
		da := a.login(alice)
		bob := b.register("bob4")
		db := b.login(bob)
		wb, _ := b.connect(db, "")
		for k := range 5 {
			a.sendREST(da, bob, fmt.Sprintf("before-%d", k), "before")
		}
		got := wb.waitN("messages", 5, isType("message"))
		cursor := str(got[4], "cursor")
		wb.close()
		for k := range 10 {
			a.sendREST(da, bob, fmt.Sprintf("after-%d", k), "after")
		}
		wc, _ := cc.connect(db, cursor)
		var replay []obj
		for _, f := range wc.snapshot() {
			if f["type"] == "synced" {
				break
			}
			if durable(f) {
				replay = append(replay, f)
			}
		}
		if len(replay) != 10 {
			t.Fatalf("replay on node 2 holds %d events, want the 10 missed: %s", len(replay), wc.dump())
		}
		for k, f := range replay {
			if f["type"] != "message" || f["client_message_id"] != fmt.Sprintf("after-%d", k) || num(f, "seq") != int64(6+k) {
				t.Errorf("replayed event %d: %v", k, f)
			}
		}
		// And live ones after synced, still once.
		a.sendREST(da, bob, "live", "live")
		wc.waitMessage("live")
		if n := wc.count(isType("message")); n != 11 {
			t.Errorf("%d messages on the resumed device, want 11", n)
		}
	})

	t.Run("NATS-native logins on every node", func(t *testing.T) {
		a := on(t, nodes[0])
		_, ds := a.newUser("nina6", 1)
		// Each login goes through an auth callout that any node may
		// answer (a queue group): the nodes share its signing key.
		for k := range 6 {
			nd := c.Node(k % 3)
			u, err := url.Parse(nd.NATSURL())
			if err != nil {
				t.Fatal(err)
			}
			cl, err := dialNATS(t, "nats://"+u.Host, ds[0])
			if err != nil {
				t.Fatalf("login %d on node %d: %v", k, k%3, err)
			}
			if me := cl.req("me", nil); me["user_id"] != ds[0].id {
				t.Errorf("me on node %d: %v", k%3, me)
			}
			cl.nc.Close()
		}
	})

	t.Run("presence and typing across nodes", func(t *testing.T) {
		a, b, cc := on(t, nodes[0]), on(t, nodes[1]), on(t, nodes[2])
		carol := a.register("carol5")
		ca, cb := a.login(carol), b.login(carol)
		dave := cc.register("dave5")
		dd := cc.login(dave)
		// Contacts: they exchanged a message, so privacy does not hide them.
		conv := str(cc.sendREST(dd, carol, "hello", "hi"), "conversation_id")
		wd, _ := cc.connect(dd, "")
		if st := wd.presence(carol.id); st != "offline" {
			t.Fatalf("carol is %s before connecting, want offline", st)
		}
		w1, _ := a.connect(ca, "")
		wd.waitFor("carol online", func(f obj) bool {
			return f["type"] == "presence" && f["user_id"] == carol.id && f["status"] == "online"
		})
		w2, _ := b.connect(cb, "")
		// Typing on node 0 reaches dave on node 2.
		w1.send(obj{"type": "typing", "conversation_id": conv, "state": "composing"})
		wd.waitFor("carol typing", func(f obj) bool {
			return f["type"] == "typing" && f["user_id"] == carol.id && f["state"] == "composing"
		})
		// One of carol's nodes losing her leaves her online: the other
		// node holds her. Watched over a while, as every node sees it.
		w1.close()
		until := time.Now().Add(3 * time.Second)
		for time.Now().Before(until) {
			for i, s := range []*server{a, b, cc} {
				if st := str(s.must(http.StatusOK, "GET", "/v1/users/"+carol.id+"/presence", dd.access, nil), "status"); st != "online" {
					t.Fatalf("carol reads %s on node %d with a device still on node 1", st, i)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		from := wd.mark()
		w2.close()
		wd.waitFrom(from, "carol offline", func(f obj) bool {
			return f["type"] == "presence" && f["user_id"] == carol.id && f["status"] == "offline"
		})
		if n := wd.count(func(f obj) bool {
			return f["type"] == "presence" && f["user_id"] == carol.id && f["status"] == "offline"
		}); n != 2 {
			// One at subscribe, one at the end: none in between.
			t.Errorf("dave saw carol offline %d times, want 2 (at subscribe and at the end)", n)
		}
	})
}

func first[A, B any](a A, _ B) A { return a }

// exactlyOnceInOrder checks that msgs (message events of one
// conversation or several) hold seq 1..n of each conversation exactly
// once, in seq order, and n events in all.
func exactlyOnceInOrder(t *testing.T, who string, msgs []obj, n int) {
	t.Helper()
	last := map[string]int64{}
	ids := map[string]bool{}
	for _, m := range msgs {
		conv, seq := str(m, "conversation_id"), num(m, "seq")
		if ids[str(m, "message_id")] {
			t.Errorf("%s: message %s twice", who, str(m, "message_id"))
		}
		ids[str(m, "message_id")] = true
		if seq != last[conv]+1 {
			t.Errorf("%s: seq %d after %d in %s", who, seq, last[conv], conv)
		}
		last[conv] = seq
	}
	if len(msgs) != n {
		t.Errorf("%s: %d messages, want %d", who, len(msgs), n)
	}
}

// TestClusterExternalNATS: natter nodes run as clients of an external
// three-node NATS cluster (real nats-servers, started in this process),
// given as several URLs with the password in them: no embedded server,
// streams R3, messages across the nodes exactly once, and the password
// never in the log.
func TestClusterExternalNATS(t *testing.T) {
	const password = "ext-operator-password-0123456789"
	urls := externalNATS(t, 3, password)
	_, nodes := clusterOf(t, 2, func() *testnode.Cluster {
		return testnode.StartExternalCluster(t, 2, strings.Join(urls, ","), testnode.Options{Flags: []string{"--replicas", "3"}})
	})
	a, b := nodes[0], nodes[1]
	alice, ad := a.newUser("alice", 1)
	bob, bd := b.newUser("bob", 1)
	wa, _ := a.connect(ad[0], "")
	wb, _ := b.connect(bd[0], "")
	for k := range 10 {
		wa.sendWait(bob, fmt.Sprintf("a-%d", k), "hi bob")
		wb.sendWait(alice, fmt.Sprintf("b-%d", k), "hi alice")
	}
	exactlyOnceInOrder(t, "alice", wa.waitN("messages", 20, isType("message")), 20)
	exactlyOnceInOrder(t, "bob", wb.waitN("messages", 20, isType("message")), 20)
	if r := b.sendREST(ad[0], bob, "a-0", "retry"); r["duplicate"] != true || num(r, "seq") != 1 {
		t.Errorf("retry through the other node: %v", r)
	}

	nc, err := nats.Connect(urls[1])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, name := range []string{streams.StreamConv, streams.StreamInbox, "KV_" + streams.BucketPresence} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}
	for i, s := range nodes {
		s.waitLog("using an external nats cluster", 1)
		// The harness logs each command line ("--- ..."); natter's own
		// lines must not hold the password.
		for _, line := range strings.Split(s.node.Log(), "\n") {
			if strings.Contains(line, password) && !strings.HasPrefix(line, "--- ") {
				t.Errorf("node %d logged the NATS password: %s", i, line)
			}
		}
		if _, err := os.Stat(filepath.Join(s.node.DataDir(), "jetstream")); !os.IsNotExist(err) {
			t.Errorf("node %d has a jetstream directory (%v): an embedded server ran", i, err)
		}
	}
}

// externalNATS starts n nats-servers with JetStream forming one cluster
// (natsnode, as natter embeds it, but on their own) and returns their
// client URLs with the operator's password in them.
func externalNATS(t *testing.T, n int, password string) []string {
	t.Helper()
	addr := func() string {
		a, err := testnode.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	routes, listen, client := make([]string, n), make([]string, n), make([]string, n)
	for i := range n {
		listen[i], client[i] = addr(), addr()
		routes[i] = "nats-route://" + listen[i]
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node, err := natsnode.Start(natsnode.Options{StoreDir: t.TempDir(), Listen: client[i], SyncInterval: time.Second,
				Operator: natsnode.Credentials{User: "operator", Password: password},
				Cluster: &natsnode.Cluster{Name: "external", ServerName: fmt.Sprintf("ext%d", i), Listen: listen[i],
					Routes: routes, Secret: "external-route-secret-0123456789"}})
			if err == nil {
				t.Cleanup(node.Shutdown)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	urls := make([]string, n)
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		urls[i] = "nats://operator:" + password + "@" + client[i]
	}
	return urls
}
