package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServeSettingsFromFlagsEnvAndFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "natter.conf")
	if err := os.WriteFile(file, []byte("http 127.0.0.1:9001\nfsync always\nheartbeat 5s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NATTER_HEARTBEAT", "7s")
	t.Setenv("NATTER_RATE_LIMIT", "off")
	cfg, err := parseServeFlags([]string{"-config", file, "--data", "/tmp/x"})
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case cfg.HTTPAddr != "127.0.0.1:9001", cfg.Fsync != "always": // from the file
		t.Fatalf("file settings not applied: %+v", cfg)
	case cfg.Heartbeat != 7*time.Second, cfg.RateLimit: // env beats the file
		t.Fatalf("environment not applied over the file: heartbeat %v rate-limit %v", cfg.Heartbeat, cfg.RateLimit)
	case cfg.DataDir != "/tmp/x": // flags beat everything
		t.Fatalf("flag not applied: %q", cfg.DataDir)
	}
}

func TestServeRefusesInvalidSettingsWithEveryReason(t *testing.T) {
	_, err := parseServeFlags([]string{"--fsync", "sometimes", "--send-burst", "0"})
	if err == nil {
		t.Fatal("invalid settings accepted")
	}
	for _, want := range []string{"--fsync", "--send-burst"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}
