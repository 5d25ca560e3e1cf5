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

// Config files in TOML, YAML and JSON, picked by extension, give the
// same settings as the plain format, under the same precedence.
func TestServeConfigFileFormats(t *testing.T) {
	files := map[string]string{
		"natter.toml": "http = \"127.0.0.1:9001\"\nfsync = \"always\"\nheartbeat = \"5s\"\nrate-limit = \"off\"\nmax-conns-per-addr = 8\nlog-format = \"json\"\n",
		"natter.yaml": "http: 127.0.0.1:9001\nfsync: always\nheartbeat: 5s\nrate-limit: \"off\"\nmax-conns-per-addr: 8\nlog-format: json\n",
		"natter.yml":  "http: 127.0.0.1:9001\nfsync: always\nheartbeat: 5s\nrate-limit: \"off\"\nmax-conns-per-addr: 8\nlog-format: json\n",
		"natter.json": `{"http": "127.0.0.1:9001", "fsync": "always", "heartbeat": "5s", "rate-limit": "off", "max-conns-per-addr": 8, "log-format": "json"}`,
		"natter.conf": "http 127.0.0.1:9001\nfsync always\nheartbeat 5s\nrate-limit off\nmax-conns-per-addr 8\nlog-format json\n",
	}
	for name, text := range files {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("NATTER_HEARTBEAT", "7s")
			cfg, err := parseServeFlags([]string{"-config", file, "--fsync", "interval"})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case cfg.HTTPAddr != "127.0.0.1:9001", cfg.RateLimit, cfg.MaxConnsPerAddr != 8, cfg.LogFormat != "json":
				t.Fatalf("file settings not applied: %+v", cfg)
			case cfg.Heartbeat != 7*time.Second:
				t.Fatalf("environment not applied over the file: heartbeat %v", cfg.Heartbeat)
			case cfg.Fsync != "interval":
				t.Fatalf("flag not applied over the file: fsync %q", cfg.Fsync)
			}
		})
	}
	// The config file can come from the environment too.
	file := filepath.Join(t.TempDir(), "n.toml")
	if err := os.WriteFile(file, []byte("http = \"127.0.0.1:9002\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NATTER_CONFIG", file)
	if cfg, err := parseServeFlags(nil); err != nil || cfg.HTTPAddr != "127.0.0.1:9002" {
		t.Fatalf("NATTER_CONFIG: %+v %v", cfg, err)
	}
	// A malformed file is an error, not silently ignored.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"http": `), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := parseServeFlags([]string{"-config", bad}); err == nil {
		t.Fatal("malformed JSON config accepted")
	}
}
