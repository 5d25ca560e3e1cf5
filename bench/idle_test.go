package bench

import (
	"os"
	"testing"
)

func TestMarginalRSS(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name string
		a, b rssAt
		want float64
		ok   bool
	}{
		// The 1,000-connection idle run of the bug report: the baseline
		// held 108 MB of hashing garbage, more than the end's 67.5 MB.
		{"grew", rssAt{500, 60 * mib}, rssAt{1000, 75 * mib}, 15 * mib / 500.0, true},
		{"one more", rssAt{1, 10 * mib}, rssAt{2, 10*mib + 4096}, 4096, true},
		{"shrank", rssAt{500, 80 * mib}, rssAt{1000, 70 * mib}, 0, false},
		{"held still", rssAt{500, 80 * mib}, rssAt{1000, 80 * mib}, 0, false},
		{"no new connections", rssAt{500, 80 * mib}, rssAt{500, 90 * mib}, 0, false},
		{"connections dropped", rssAt{500, 80 * mib}, rssAt{400, 90 * mib}, 0, false},
	} {
		got, ok := marginalRSS(c.a, c.b)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: marginalRSS(%v, %v) = %v, %v; want %v, %v", c.name, c.a, c.b, got, ok, c.want, c.ok)
		}
	}
}

// TestIdleMarginalRSS spawns the test binary as natter with a known cost
// of 1 MiB of heap per connection: the marginal figure, between half and
// all of the connections, must find it.
func TestIdleMarginalRSS(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeServeEnv, "1")
	t.Setenv(fakeBallastEnv, "1048576")
	r, err := runBench(t, "idle", "--spawn", "--natter-bin", exe, "--conns", "20", "--accounts", "4", "--duration", "200ms")
	if err != nil {
		t.Fatal(err)
	}
	c := r.Connections
	if c == nil || c.Opened != 20 {
		t.Fatalf("connections = %+v, want 20 opened", c)
	}
	if c.MarginalFrom != 10 || c.MarginalTo != 20 {
		t.Fatalf("marginal from %d to %d connections, want 10 to 20", c.MarginalFrom, c.MarginalTo)
	}
	// A halved or doubled figure (the wrong connections counted) falls
	// outside.
	want := float64(residentFactor << 20)
	t.Logf("marginal RSS per connection %.0f bytes, from %d to %d connections", c.ServerRSSMarginalPerConn, c.MarginalFrom, c.MarginalTo)
	if per := c.ServerRSSMarginalPerConn; per < 0.75*want || per > 1.5*want {
		t.Errorf("marginal RSS per connection %.0f bytes, want about %.0f", per, want)
	}
}

// Without the server's pid there is no RSS to sample: idle runs, without
// the figure.
func TestIdleMarginalRSSWithoutPID(t *testing.T) {
	_, url := startFake(t)
	r, err := runBench(t, "idle", "--url", url, "--conns", "6", "--duration", "200ms")
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Connections; c == nil || c.Opened != 6 || c.ServerRSSMarginalPerConn != 0 || c.MarginalTo != 0 {
		t.Fatalf("connections = %+v, want 6 opened and no marginal RSS", c)
	}
}
