package bench

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMixEndToEnd runs the mix scenario against the real natter, spawned
// with --server-args so that its groups fan out through the work queue:
// every 1:1 and group message is delivered once to each recipient, and
// the two latencies count exactly their own deliveries.
func TestMixEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds natter and spawns it")
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == "/dev/null" {
		t.Skipf("no module root (go env GOMOD: %q, %v)", gomod, err)
	}
	bin := filepath.Join(t.TempDir(), "natter")
	build := exec.Command("go", "build", "-o", bin, "./cmd/natter")
	build.Dir = filepath.Dir(gomod)
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("natter does not build yet: %v\n%s", err, out)
	}
	r, err := runBench(t, "mix", "--spawn", "--natter-bin", bin, "--server-args", "--fanout-queue-threshold 4 --fanout-partitions 2",
		"--pairs", "3", "--rate", "10", "--groups", "2", "--members", "5", "--group-rate", "5",
		"--warmup", "500ms", "--duration", "2s")
	if err != nil {
		t.Fatal(err)
	}
	m := r.Messages
	// Measured: 3 senders × 20 at 10/s, and 2 group senders at 5/s, 10
	// each give or take one (their starts are staggered); each group
	// message reaches 4 members.
	const direct = 3 * 20
	group := m.Offered - direct
	if group < 19 || group > 22 || m.Acked != m.Offered || m.Delivered != direct+4*group {
		t.Errorf("offered %d acked %d delivered %d, want %d 1:1 and about 20 group messages, all acked, delivered %d", m.Offered, m.Acked, m.Delivered, direct, direct+4*group)
	}
	if m.Lost != 0 || m.Duplicates != 0 || m.Unacked != 0 || !m.Settled || len(r.Errors) > 0 {
		t.Errorf("lost %d duplicates %d unacked %d settled %v errors %v", m.Lost, m.Duplicates, m.Unacked, m.Settled, r.Errors)
	}
	dl, gl := r.Latency.DirectDelivery, r.Latency.GroupDelivery
	if dl == nil || gl == nil || dl.Count != direct || gl.Count != 4*group {
		t.Errorf("1:1 latency %+v and group latency %+v, want %d and %d deliveries", dl, gl, direct, 4*group)
	}
}
