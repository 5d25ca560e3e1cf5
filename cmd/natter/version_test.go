package main

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/natter-chat/natter/internal/testnode"
)

func TestVersionNamesNatterGoAndNATS(t *testing.T) {
	var out strings.Builder
	if err := version(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"natter ", "revision ", "go " + runtime.Version(), "nats-server " + server.VERSION} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("version output lacks %q:\n%s", want, out.String())
		}
	}
	// The built binary answers too. (Its revision is "(unknown)" when
	// built with -buildvcs=false, as GOFLAGS sets here, or from a git
	// worktree, which Go does not stamp.)
	bin, err := testnode.Binary()
	if err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("natter version: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), "nats-server "+server.VERSION) {
		t.Errorf("natter version lacks the nats-server version:\n%s", b)
	}
	t.Logf("natter version:\n%s", b)
}

// natter serve -h states the precedence and how environment names are
// formed.
func TestServeHelpStatesPrecedenceAndEnvironmentNames(t *testing.T) {
	bin, err := testnode.Binary()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := exec.Command(bin, "serve", "-h").CombinedOutput()
	for _, want := range []string{"NATTER_SYNC_INTERVAL", "A flag beats the environment, which", ".toml", ".yaml", ".json", "-log-format", "-max-conns-per-addr", "-nats-insecure"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("serve -h lacks %q:\n%s", want, b)
		}
	}
}

// --log-format json makes every line of the log a JSON object.
func TestLogFormatJSON(t *testing.T) {
	node := testnode.Start(t, testnode.Options{Flags: []string{"--log-format", "json"}})
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(node.Log()))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "--- ") { // testnode's own marker
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if rec["msg"] == nil || rec["level"] == nil {
			t.Fatalf("no msg or level: %q", line)
		}
		lines++
	}
	if lines == 0 {
		t.Fatal("no log lines")
	}
}
