//go:build torture

package torture

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
)

var (
	duration = flag.Duration("torture.duration", 60*time.Second,
		"load time of the crash loop (other tests scale with it); CI uses the default, soak runs take longer")
	reportPath = flag.String("torture.report", "",
		"append each test's figures to this file: JSON lines if it ends in .json or .jsonl, markdown otherwise")
	fsyncMode = flag.String("torture.fsync", "interval", `natter's --fsync mode for the crash tests: "interval" or "always"`)
	loadRate  = flag.Float64("torture.rate", 200, "messages per second offered by the crash loop's clients, in total")
)

// wait bounds every poll: generous, because the suite runs under -race
// on a loaded two-core machine.
const wait = 60 * time.Second

const password = "password123"

func TestMain(m *testing.M) {
	flag.Parse()
	if *fsyncMode != "interval" && *fsyncMode != "always" {
		fmt.Fprintf(os.Stderr, "-torture.fsync must be interval or always, not %q\n", *fsyncMode)
		os.Exit(2)
	}
	os.Exit(testnode.Main(m))
}

// figures collects one test's results, in a fixed order, and reports them
// when the test ends, passed or failed: one line in the test log
//
//	FIGURES <test> key=value key=value ...
//
// and an entry in the -torture.report file.
type figures struct {
	t     *testing.T
	test  string
	start time.Time
	mu    sync.Mutex
	items []figure
}

type figure struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
	Goal  string `json:"goal,omitempty"`
}

func newFigures(t *testing.T, test string) *figures {
	f := &figures{t: t, test: test, start: time.Now()}
	t.Cleanup(f.report)
	return f
}

// add records a figure; set replaces an earlier one of the same name.
func (f *figures) add(name string, value any) { f.set(name, value, "") }

// goal records a figure with the value it must have (or bound), as text.
func (f *figures) goal(name string, value any, goal string) { f.set(name, value, goal) }

func (f *figures) set(name string, value any, goal string) {
	if d, ok := value.(time.Duration); ok {
		value = d.Round(time.Millisecond).String()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.items {
		if f.items[i].Name == name {
			f.items[i] = figure{name, value, goal}
			return
		}
	}
	f.items = append(f.items, figure{name, value, goal})
}

func (f *figures) report() {
	f.mu.Lock()
	items := append([]figure(nil), f.items...)
	f.mu.Unlock()
	result := "pass"
	if f.t.Failed() {
		result = "FAIL"
	}
	took := time.Since(f.start).Round(time.Second)
	var b strings.Builder
	fmt.Fprintf(&b, "FIGURES %s result=%s took=%s", f.test, result, took)
	for _, it := range items {
		fmt.Fprintf(&b, " %s=%v", it.Name, it.Value)
	}
	f.t.Log(b.String())
	if *reportPath == "" {
		return
	}
	if err := appendReport(*reportPath, f.test, result, took, items); err != nil {
		f.t.Errorf("write report: %v", err)
	}
}

var reportMu sync.Mutex

func appendReport(path, test, result string, took time.Duration, items []figure) error {
	reportMu.Lock()
	defer reportMu.Unlock()
	file, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer file.Close()
	now := time.Now().UTC().Format(time.RFC3339)
	host := fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	switch ext := filepath.Ext(path); ext {
	case ".json", ".jsonl":
		line, err := json.Marshal(map[string]any{"test": test, "result": result, "took": took.String(), "at": now,
			"host": host, "duration_flag": duration.String(), "fsync": *fsyncMode, "figures": items})
		if err != nil {
			return err
		}
		_, err = file.Write(append(line, '\n'))
		return err
	default:
		var b strings.Builder
		fmt.Fprintf(&b, "\n### %s: %s (%s, took %s, -torture.duration=%s, %s)\n\n", test, result, now, took, *duration, host)
		b.WriteString("| figure | value | goal |\n|---|---|---|\n")
		for _, it := range items {
			fmt.Fprintf(&b, "| %s | %v | %s |\n", it.Name, it.Value, it.Goal)
		}
		_, err = file.WriteString(b.String())
		return err
	}
}

// expect records a figure that must equal want, and fails the test when
// it does not.
func (f *figures) expect(name string, got, want int) {
	f.t.Helper()
	f.goal(name, got, fmt.Sprint(want))
	if got != want {
		f.t.Errorf("%s = %d, want %d", name, got, want)
	}
}

// eventually polls cond every 20 ms until it holds or within passes.
func eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// percentile returns the p-th percentile (0-100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(sorted))*p/100)) - 1 // nearest rank
	return sorted[max(0, min(i, len(sorted)-1))]
}

// duo is a node with alice and bob, one device each: what most tests
// start from. view reads the node's streams when opts.NATS is set.
type duo struct {
	node   *testnode.Node
	rest   *testnode.Client
	view   *natsView
	as, bs []testnode.Device // alice's and bob's devices
	bob    testnode.User
}

func startDuo(ctx context.Context, t *testing.T, opts testnode.Options) duo {
	t.Helper()
	d := duo{node: testnode.Start(t, opts)}
	d.rest = d.node.Client()
	t.Cleanup(d.rest.Close)
	var err error
	if opts.NATS {
		if d.view, err = dialNATS(d.node.NATSURL()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.view.Close)
	}
	if _, d.as, err = d.rest.NewUser(ctx, "alice", password, 1); err != nil {
		t.Fatal(err)
	}
	if d.bob, d.bs, err = d.rest.NewUser(ctx, "bob", password, 1); err != nil {
		t.Fatal(err)
	}
	return d
}
