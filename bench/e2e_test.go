package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natter-chat/natter/internal/testnode"
)

// TestEndToEnd builds the real natter and runs a short pairs bench against
// it with --spawn: it checks that the bench ran and counted correctly, not
// how fast the server is. It is skipped while natter does not build.
func TestEndToEnd(t *testing.T) {
	bin := buildNatter(t)
	r, err := runBench(t, "pairs", "--spawn", "--natter-bin", bin,
		"--pairs", "5", "--rate", "20", "--warmup", "500ms", "--duration", "2s")
	if err != nil {
		t.Fatal(err)
	}
	// 20/s for 2.5 s is 50 sends per sender, 10 of them in the warmup.
	checkClean(t, r, 5*40)
	if r.Server == nil || r.Server.PID <= 0 {
		t.Fatalf("server stats = %+v, want the spawned natter's", r.Server)
	}
	// A real natter's figures come from its metrics, counters included:
	// the measured window's sends (about 5 × 20/s × 2 s) were counted.
	if c := r.Server.Counters; r.Server.Source != sourceMetrics || c == nil || c.SendsAccepted < 100 || c.SendsAccepted > 250 ||
		c.FannedOut < 100 || c.WSFramesOut < c.SendsAccepted || r.Server.PeakRSS < r.Server.RSSBytes {
		t.Errorf("server stats = %+v (counters %+v), want from metrics with the window's sends", r.Server, r.Server.Counters)
	}
}

// TestEndToEndCluster runs pairs on three spawned nodes forming one
// JetStream cluster (--nodes 3) on the PostgreSQL of
// $NATTER_TEST_POSTGRES_URL: both ends of every pair are on different
// nodes, so every delivery crosses the cluster, and the server's figures
// are the three processes summed.
func TestEndToEndCluster(t *testing.T) {
	pg := os.Getenv(testnode.PostgresEnv)
	if pg == "" {
		t.Skipf("a cluster shares a PostgreSQL store: set %s", testnode.PostgresEnv)
	}
	bin := buildNatter(t)
	r, err := runBench(t, "pairs", "--spawn", "--natter-bin", bin, "--nodes", "3", "--postgres-url", pg,
		"--pairs", "6", "--rate", "20", "--warmup", "500ms", "--duration", "2s")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, r, 6*40)
	if r.Server == nil || len(r.Server.PIDs) != 3 || r.Server.Source != sourceProc || r.Server.CPUPercent <= 0 {
		t.Fatalf("server stats = %+v, want the three nodes' /proc summed", r.Server)
	}
	if r.Params["nodes"] != float64(3) {
		t.Errorf("params = %v, want nodes 3", r.Params)
	}
}

// buildNatter builds cmd/natter into a temporary directory; the test is
// skipped in -short mode and while natter does not build.
func buildNatter(t *testing.T) string {
	t.Helper()
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
	return bin
}
