package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startFake serves a fakeNatter for the test and returns it and its URL.
func startFake(t *testing.T) (*fakeNatter, string) {
	t.Helper()
	fake := newFakeNatter()
	srv := httptest.NewServer(fake.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(fake.Close) // first: hijacked connections outlive srv.Close
	return fake, srv.URL
}

// runBench runs Main with args and --json and decodes the report.
func runBench(t *testing.T, args ...string) (*Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a cluster waits for its quorum
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := Main(ctx, append(args, "--json"), &stdout, &stderr)
	t.Logf("stderr:\n%s", stderr.String())
	var r Report
	if stdout.Len() > 0 {
		if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil {
			t.Fatalf("report is not JSON: %v\n%s", jerr, stdout.String())
		}
	}
	return &r, err
}

// checkClean asserts that a message load ran and lost nothing: every
// measured send acked and delivered, no duplicates, no errors.
func checkClean(t *testing.T, r *Report, wantOffered int64) {
	t.Helper()
	m := r.Messages
	if m == nil {
		t.Fatal("report without messages")
	}
	if m.Offered != wantOffered || m.Acked != m.Offered || m.Delivered != m.Offered {
		t.Errorf("offered %d acked %d delivered %d, want %d each", m.Offered, m.Acked, m.Delivered, wantOffered)
	}
	if m.Lost != 0 || m.Duplicates != 0 || m.Unacked != 0 || m.Failed != 0 || !m.Settled {
		t.Errorf("lost %d duplicates %d unacked %d refused %d settled %v, want 0 and settled", m.Lost, m.Duplicates, m.Unacked, m.Failed, m.Settled)
	}
	if len(r.Errors) > 0 {
		t.Errorf("errors: %v", r.Errors)
	}
	ack, dlv := r.Latency.SendToAck, r.Latency.SendToDelivery
	if ack == nil || dlv == nil || ack.Count != m.Acked || dlv.Count != m.Delivered {
		t.Errorf("latencies %+v %+v do not count every acked and delivered message", ack, dlv)
	}
}

func TestPairs(t *testing.T) {
	_, url := startFake(t)
	r, err := runBench(t, "pairs", "--url", url, "--pairs", "5", "--rate", "50", "--warmup", "200ms", "--duration", "1s")
	if err != nil {
		t.Fatal(err)
	}
	// 50/s for 1.2 s is 60 sends per sender, of which the first 10 are due
	// in the warmup.
	checkClean(t, r, 5*50)
	if r.Seconds < 1 || r.Messages.OfferedPerSec < 200 || r.Messages.OfferedPerSec > 260 {
		t.Errorf("%.2f s at %.0f msg/s offered, want 1 s at about 250", r.Seconds, r.Messages.OfferedPerSec)
	}
	if r.Server != nil {
		t.Errorf("server stats %+v without a pid", r.Server)
	}
	if r.Bench == nil || r.Bench.PID != os.Getpid() {
		t.Errorf("bench stats = %+v, want this process", r.Bench)
	}
}

func TestPairsCountsLossAndDuplicates(t *testing.T) {
	fake, url := startFake(t)
	fake.dropNth, fake.dupNth = 7, 12
	r, err := runBench(t, "pairs", "--url", url, "--pairs", "2", "--rate", "20", "--warmup", "0s", "--duration", "1s", "--drain", "500ms")
	if err == nil || !strings.Contains(err.Error(), "1 deliveries lost") || !strings.Contains(err.Error(), "1 duplicate") {
		t.Fatalf("Main = %v, want an error naming the lost and the duplicate delivery", err)
	}
	m := r.Messages
	if m == nil || m.Lost != 1 || m.Duplicates != 1 || m.Acked != m.Offered || m.Delivered != m.Offered-1 {
		t.Fatalf("messages = %+v, want 1 lost and 1 duplicate of all acked", m)
	}
}

// A delivery lost in the warm-up is not among the measured messages that
// offered counts: it is reported apart, and still fails the run.
func TestPairsCountsWarmupLossApart(t *testing.T) {
	fake, url := startFake(t)
	fake.mu.Lock()
	fake.dropNth = 3 // one pair: message 2, due 100 ms into a 500 ms warm-up
	fake.mu.Unlock()
	r, err := runBench(t, "pairs", "--url", url, "--pairs", "1", "--rate", "20", "--warmup", "500ms", "--duration", "500ms", "--drain", "300ms")
	if err == nil || !strings.Contains(err.Error(), "1 warm-up deliveries lost") || strings.Contains(err.Error(), "1 deliveries lost") {
		t.Fatalf("Main = %v, want an error naming the warm-up loss only", err)
	}
	m := r.Messages
	if m == nil || m.Offered != 10 || m.Delivered != m.Offered || m.Lost != 0 || m.WarmupLost != 1 || m.Unacked != 0 || m.WarmupUnacked != 0 {
		t.Fatalf("messages = %+v, want 10 offered and delivered, none of them lost, 1 lost in the warm-up", m)
	}
}

func TestIdle(t *testing.T) {
	_, url := startFake(t)
	r, err := runBench(t, "idle", "--url", url, "--conns", "20", "--accounts", "5", "--source-ips", "3", "--duration", "500ms")
	if err != nil {
		t.Fatal(err)
	}
	c := r.Connections
	if c == nil || c.Requested != 20 || c.Opened != 20 || c.Failed != 0 || c.Dropped != 0 {
		t.Fatalf("connections = %+v, want 20 opened and held", c)
	}
	if c.Pongs > c.Pings {
		t.Errorf("%d pongs for %d pings", c.Pongs, c.Pings)
	}
}

func TestCatchup(t *testing.T) {
	_, url := startFake(t)
	r, err := runBench(t, "catchup", "--url", url, "--pairs", "3", "--events", "200")
	if err != nil {
		t.Fatal(err)
	}
	c := r.Catchup
	if c == nil || c.Replayed != 600 || c.Missing != 0 || c.Duplicates != 0 {
		t.Fatalf("catchup = %+v, want 600 replayed, none missing or twice", c)
	}
	if m := r.Messages; m.Offered != 600 || m.Acked != 600 {
		t.Errorf("messages = %+v, want 600 sent and acked", m)
	}
	if l := r.Latency.ConnectToSynced; l == nil || l.Count != 3 {
		t.Errorf("time to synced = %+v, want 3 reconnects", l)
	}
}

func TestChurn(t *testing.T) {
	_, url := startFake(t)
	r, err := runBench(t, "churn", "--url", url, "--conns", "4", "--accounts", "2", "--duration", "1s")
	if err != nil {
		t.Fatal(err)
	}
	c := r.Connections
	if c == nil || c.Opened < 10 || c.Closed != c.Opened || c.Failed != 0 {
		t.Fatalf("connections = %+v, want many connects, each closed", c)
	}
	if l := r.Latency.ConnectToSynced; l == nil || l.Count != c.Opened {
		t.Errorf("time to synced = %+v, want one per connect", l)
	}
}

// TestSpawn runs the test binary itself as the spawned natter (see
// TestMain): --spawn must start it with natter serve's flags, wait for
// /healthz, read its /proc statistics and stop it.
func TestSpawn(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeServeEnv, "1")
	r, err := runBench(t, "pairs", "--spawn", "--natter-bin", exe, "--fsync", "always",
		"--pairs", "2", "--rate", "20", "--warmup", "0s", "--duration", "500ms")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, r, 2*10)
	if r.Server == nil || r.Server.PID <= 0 || r.Server.RSSBytes <= 0 {
		t.Fatalf("server stats = %+v, want the spawned process's", r.Server)
	}
	// The fake serves no /metrics: /proc it is.
	if r.Server.Source != sourceProc || r.Server.Counters != nil {
		t.Errorf("server stats source = %q, counters %+v; want /proc's without counters", r.Server.Source, r.Server.Counters)
	}
	if !strings.HasPrefix(r.Target, "http://127.0.0.1:") {
		t.Errorf("target = %q", r.Target)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(r.Server.PID)); err == nil {
		t.Errorf("spawned server %d still runs", r.Server.PID)
	}
}

func TestSpawnFailure(t *testing.T) {
	_, err := runBench(t, "pairs", "--spawn", "--natter-bin", "/bin/false")
	if err == nil || !strings.Contains(err.Error(), "exited before it was healthy") {
		t.Fatalf("Main = %v, want the server's early exit", err)
	}
}

func TestRawWSEcho(t *testing.T) {
	r, err := runBench(t, "raw-ws-echo", "--conns", "4", "--warmup", "200ms", "--duration", "500ms")
	if err != nil {
		t.Fatal(err)
	}
	m := r.Messages
	if m == nil || m.Offered == 0 || m.Acked != m.Offered || m.Unacked != 0 || !m.Settled {
		t.Fatalf("messages = %+v, want every message echoed, settled", m)
	}
	if l := r.Latency.RoundTrip; l == nil || l.Count != m.Acked {
		t.Errorf("round trips = %+v, want one per echo", l)
	}
}

func TestRawJetStream(t *testing.T) {
	r, err := runBench(t, "raw-jetstream", "--warmup", "200ms", "--duration", "500ms", "--fsync", "interval")
	if err != nil {
		t.Fatal(err)
	}
	m := r.Messages
	if m == nil || m.Offered == 0 || m.Acked != m.Offered || m.Unacked != 0 || !m.Settled {
		t.Fatalf("messages = %+v, want every publish acked, settled", m)
	}
	if l := r.Latency.SendToAck; l == nil || l.Count != m.Acked {
		t.Errorf("ack latencies = %+v, want one per ack", l)
	}
}

// The raw pipeline carries every acked message to its peer once, with
// and without the parts --without can leave out.
func TestRawPipeline(t *testing.T) {
	for _, without := range [][]string{nil, {"--without", "persist,own-copy,expected-seq"}} {
		args := append([]string{"raw-pipeline", "--pairs", "3", "--rate", "20", "--warmup", "200ms", "--duration", "500ms"}, without...)
		r, err := runBench(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		m := r.Messages
		if m == nil || m.Offered == 0 || m.Acked != m.Offered || m.Delivered != m.Acked || m.Lost != 0 || m.Duplicates != 0 || !m.Settled {
			t.Fatalf("%v: messages = %+v, want every send acked and delivered once, settled", without, m)
		}
		if l := r.Latency.SendToDelivery; l == nil || l.Count != m.Delivered {
			t.Errorf("%v: delivery latencies = %+v, want one per delivery", without, l)
		}
	}
}

func TestParseArgs(t *testing.T) {
	for _, c := range []struct {
		args []string
		err  string
	}{
		{[]string{"pairs", "--pairs", "3", "--rate", "2.5"}, ""},
		{[]string{"--pairs", "3", "pairs", "--rate", "2.5"}, ""},
		{[]string{}, "name a scenario"},
		{[]string{"nope"}, "unknown scenario"},
		{[]string{"group", "--members", "501"}, "--members"},
		{[]string{"pairs", "extra"}, "unexpected arguments"},
		{[]string{"raw-pipeline", "--without", "store"}, "unknown part"},
		{[]string{"pairs", "--rate", "0", "--fsync", "never", "--size", "1"}, "--rate"},
		{[]string{"pairs", "--url", "localhost:8080"}, "--url"},
		{[]string{"pairs", "--source-ips", "300"}, "--source-ips"},
	} {
		cfg, sc, err := parseArgs(c.args, io.Discard)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("parseArgs(%q) = %v", c.args, err)
		case c.err == "" && (sc.name != "pairs" || cfg.Pairs != 3 || cfg.Rate != 2.5):
			t.Errorf("parseArgs(%q) = %s %+v", c.args, sc.name, cfg)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("parseArgs(%q) = %v, want an error about %s", c.args, err, c.err)
		}
	}
	if _, _, err := parseArgs([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

func TestReportTable(t *testing.T) {
	r := &Report{
		Scenario: "pairs", Target: "http://x", Params: map[string]any{"pairs": 2}, Seconds: 10,
		Messages: &Messages{Offered: 100, Acked: 100, Delivered: 99, Lost: 1, OfferedPerSec: 10},
		Latency:  Latencies{SendToAck: &Latency{Count: 100, P50: 1.5, P99: 12.25, Max: 30}, SendToDelivery: &Latency{Count: 99}},
		Errors:   map[string]int64{"rate_limited": 3},
		Server:   &ProcStats{PID: 1, CPUPercent: 55, RSSBytes: 3 << 20, PeakRSS: 5 << 20},
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"natter bench pairs", "100 (10/s)", "lost", "error rate_limited", "3.0 MiB (5.0 MiB)", "send → delivery", "12.2"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	if err := r.Problem(); err == nil || !strings.Contains(err.Error(), "1 deliveries lost") {
		t.Errorf("Problem() = %v", err)
	}
}

func TestReportTableWarmupAndMarginal(t *testing.T) {
	pairs := &Report{
		Scenario: "pairs", Params: map[string]any{},
		Messages: &Messages{Offered: 100, Acked: 100, Delivered: 100, WarmupLost: 2, WarmupUnacked: 3, Settled: true},
		Latency:  Latencies{SendToAck: &Latency{Count: 100}, SendToDelivery: &Latency{Count: 100}},
	}
	idle := &Report{
		Scenario: "idle", Params: map[string]any{},
		Connections: &Connections{Requested: 1000, Opened: 1000, ServerRSSMarginalPerConn: 30 << 10, MarginalFrom: 500, MarginalTo: 1000},
	}
	for _, c := range []struct {
		r    *Report
		want []string
	}{
		{pairs, []string{"lost in warm-up", "unacked in warm-up", "duplicates (whole run)"}},
		{idle, []string{"server RSS per conn, marginal 500 → 1000 conns", "30.0 KiB"}},
	} {
		var b bytes.Buffer
		if err := c.r.WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s table lacks %q:\n%s", c.r.Scenario, w, b.String())
			}
		}
	}
	if err := pairs.Problem(); err == nil || err.Error() != "2 warm-up deliveries lost" {
		t.Errorf("Problem() = %v, want the warm-up loss", err)
	}
}
