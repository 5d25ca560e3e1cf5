package bench

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
)

// The server's figures come from a real natter's /metrics: parsed with
// Prometheus' parser, its CPU and RSS agree with /proc, its peak is at
// least its RSS, and its counters move with the messages sent.
func TestServerFiguresFromMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns natter")
	}
	node := testnode.Start(t, testnode.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := newMetricsReader(node.URL() + "/metrics")
	s0, c0, err := m.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	proc, err := readProc(node.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if s0.CPU <= 0 || s0.RSS <= 0 || s0.PeakRSS < s0.RSS {
		t.Fatalf("sample %+v: want CPU, RSS and a peak of at least the RSS", s0)
	}
	// The same process: RSS within a factor of /proc's (it moves a
	// little between the two reads), and CPU no more than /proc's later.
	if s0.RSS < proc.RSS/2 || s0.RSS > proc.RSS*2 {
		t.Errorf("metrics RSS %d, /proc %d", s0.RSS, proc.RSS)
	}
	if s0.CPU > proc.CPU+50*time.Millisecond {
		t.Errorf("metrics CPU %v is past /proc's later reading %v", s0.CPU, proc.CPU)
	}

	c := node.Client()
	defer c.Close()
	_, as, err := c.NewUser(ctx, "ann", "a long enough password", 1)
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := c.NewUser(ctx, "bob", "a long enough password", 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 7
	for i := range n {
		if _, err := c.Send(ctx, as[0].Access, testnode.NewSend("m"+string(rune('a'+i)), bob.ID, "hi")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		s1, c1, err := m.read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c1.Sent-c0.Sent == n && c1.FannedOut-c0.FannedOut >= n {
			if s1.CPU <= s0.CPU {
				t.Errorf("CPU did not grow over 2 registrations and %d sends: %v then %v", n, s0.CPU, s1.CPU)
			}
			break
		}
		if c1.Sent-c0.Sent > n {
			t.Fatalf("sent counter grew by %v for %d sends", c1.Sent-c0.Sent, n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters %+v then %+v: want %d more sends and fanned-out events", c0, c1, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// parseMetrics refuses what has no process series, so that a
// /metrics of something else falls back to /proc instead of reporting
// zeros.
func TestParseMetricsNeedsProcessSeries(t *testing.T) {
	if _, _, err := parseMetrics(strings.NewReader("# TYPE natter_messages_in_total counter\nnatter_messages_in_total{result=\"sent\"} 3\n"), time.Now()); err == nil {
		t.Error("a scrape without process_cpu_seconds_total parsed")
	}
	s, c, err := parseMetrics(strings.NewReader(`# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.5
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 4.194304e+07
# TYPE natter_messages_in_total counter
natter_messages_in_total{result="sent"} 3
natter_messages_in_total{result="duplicate"} 9
`), time.Now())
	if err != nil || s.CPU != 1500*time.Millisecond || s.RSS != 40<<20 || s.PeakRSS != 0 || c.Sent != 3 {
		t.Errorf("parsed %+v %+v %v", s, c, err)
	}
}

// A server whose /metrics do not answer is watched through /proc, and
// the report says so.
func TestServerFiguresFallBackToProc(t *testing.T) {
	node := testnode.Start(t, testnode.Options{Flags: []string{"--metrics=false"}})
	base, err := url.Parse(node.URL())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{log: slog.New(slog.DiscardHandler), target: &target{bases: []*url.URL{base}, pids: []int{node.Pid()}, metricsURL: node.URL() + "/metrics"}}
	st := e.watchServer().stats()
	if st == nil || st.Source != sourceProc || st.Counters != nil || st.RSSBytes <= 0 {
		t.Fatalf("stats = %+v, want /proc's", st)
	}
	e.target.metricsURL = ""
	e.target.pids = nil
	if st := e.watchServer().stats(); st != nil {
		t.Fatalf("stats without metrics or pid = %+v, want none", st)
	}
}
