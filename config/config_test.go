package config

import (
	"context"
	"flag"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/natsnode"
	"github.com/natter-chat/natter/streams"
)

func TestDefaultValidates(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default() does not validate: %v", err)
	}
	d := Default()
	// The contract's documented defaults.
	if !d.RateLimit || d.SendBurst != 100 || d.SendRate != 20 || d.AuthBurst != 20 || d.AuthRate != 1 {
		t.Errorf("rate limits %+v differ from the contract", d)
	}
	if d.ReadLimit != 1<<20 || d.InboxRetention != 30*24*time.Hour {
		t.Errorf("read limit %d / inbox retention %v differ from the contract", d.ReadLimit, d.InboxRetention)
	}
}

func TestValidateRejectsEachBadSetting(t *testing.T) {
	cases := []struct {
		name string
		edit func(c *Server)
		flag string // the message names the setting
	}{
		{"no http", func(c *Server) { c.HTTPAddr = "" }, "--http"},
		{"no data", func(c *Server) { c.DataDir = "" }, "--data"},
		{"fsync other", func(c *Server) { c.Fsync = "sometimes" }, "--fsync"},
		{"fsync empty", func(c *Server) { c.Fsync = "" }, "--fsync"},
		{"fsync case", func(c *Server) { c.Fsync = "Always" }, "--fsync"},
		{"sync interval 0", func(c *Server) { c.SyncInterval = 0 }, "--sync-interval"},
		{"sync interval negative", func(c *Server) { c.SyncInterval = -time.Second }, "--sync-interval"},
		{"send burst 0", func(c *Server) { c.SendBurst = 0 }, "--send-burst"},
		{"send rate 0", func(c *Server) { c.SendRate = 0 }, "--send-rate"},
		{"send rate NaN", func(c *Server) { c.SendRate = math.NaN() }, "--send-rate"},
		{"auth burst negative", func(c *Server) { c.AuthBurst = -1 }, "--auth-burst"},
		{"auth rate negative", func(c *Server) { c.AuthRate = -1 }, "--auth-rate"},
		{"inbox retention 59s", func(c *Server) { c.InboxRetention = 59 * time.Second }, "--inbox-retention"},
		{"conv retention 0", func(c *Server) { c.ConvRetention = 0 }, "--conv-retention"},
		{"stream max bytes 0", func(c *Server) { c.StreamMaxBytes = 0 }, "--stream-max-bytes"},
		{"stream max bytes -2", func(c *Server) { c.StreamMaxBytes = -2 }, "--stream-max-bytes"},
		{"stream max bytes 1 MiB - 1", func(c *Server) { c.StreamMaxBytes = 1<<20 - 1 }, "--stream-max-bytes"},
		{"duplicate window 99ms", func(c *Server) { c.DuplicateWindow = 99 * time.Millisecond }, "--duplicate-window"},
		{"token ttl 999ms", func(c *Server) { c.AccessTokenTTL = 999 * time.Millisecond }, "--access-token-ttl"},
		{"read limit too small", func(c *Server) { c.ReadLimit = 1<<16 + 1023 }, "--read-limit"},
		{"heartbeat 99ms", func(c *Server) { c.Heartbeat = 99 * time.Millisecond }, "--heartbeat"},
		{"send queue 15", func(c *Server) { c.SendQueue = 15 }, "--send-queue"},
		{"max deliver 0", func(c *Server) { c.MaxDeliver = 0 }, "--max-deliver"},
		{"max ack pending 0", func(c *Server) { c.MaxAckPending = 0 }, "--max-ack-pending"},
		{"log level other", func(c *Server) { c.LogLevel = "verbose" }, "--log-level"},
		{"log level empty", func(c *Server) { c.LogLevel = "" }, "--log-level"},
		{"store other", func(c *Server) { c.Store = "mysql" }, "--store"},
		{"store empty", func(c *Server) { c.Store = "" }, "--store"},
		{"postgres without url", func(c *Server) { c.Store = StorePostgres }, "--postgres-url"},
		{"cassandra without hosts", func(c *Server) { c.Store = StoreCassandraSQLite }, "--cassandra-hosts"},
		{"cassandra without keyspace", func(c *Server) {
			c.Store, c.CassandraHosts, c.CassandraKeyspace = StoreCassandraSQLite, []string{"127.0.0.1"}, ""
		}, "--cassandra-keyspace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.edit(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.flag) {
				t.Errorf("error %q does not name %s", err, tc.flag)
			}
		})
	}
}

func TestValidateAcceptsBoundaries(t *testing.T) {
	for name, edit := range map[string]func(c *Server){
		"fsync always":            func(c *Server) { c.Fsync = FsyncAlways },
		"rate limit off":          func(c *Server) { c.RateLimit = false },
		"stream max bytes 1 MiB":  func(c *Server) { c.StreamMaxBytes = 1 << 20 },
		"duplicate window 100ms":  func(c *Server) { c.DuplicateWindow = 100 * time.Millisecond },
		"token ttl 1s":            func(c *Server) { c.AccessTokenTTL = time.Second },
		"read limit minimum":      func(c *Server) { c.ReadLimit = 1<<16 + 1024 },
		"heartbeat 100ms":         func(c *Server) { c.Heartbeat = 100 * time.Millisecond },
		"send queue 16":           func(c *Server) { c.SendQueue = 16 },
		"max deliver 1":           func(c *Server) { c.MaxDeliver = 1 },
		"log level debug":         func(c *Server) { c.LogLevel = "debug" },
		"nats listen and origins": func(c *Server) { c.NATSListen = "127.0.0.1:4222"; c.AllowedOrigins = []string{"https://a"} },
	} {
		c := Default()
		edit(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestValidateReportsEveryErrorAtOnce(t *testing.T) {
	c := Default()
	c.HTTPAddr, c.Fsync, c.SendQueue, c.LogLevel = "", "x", 0, "x"
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, f := range []string{"--http", "--fsync", "--send-queue", "--log-level"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q misses %s", err, f)
		}
	}
}

// TestValidateRefusesDuplicateWindowOverRetention: JetStream refuses a
// stream whose duplicate window exceeds its max age ("duplicates window
// can not be larger then max age"), so such a configuration cannot start.
// Validate should say so instead of letting `natter serve` fail in
// streams.Ensure. The documented minimum --conv-retention 1m with the
// default --duplicate-window 2m is such a configuration.
func TestValidateRefusesDuplicateWindowOverRetention(t *testing.T) {
	for name, edit := range map[string]func(c *Server){
		"conv retention 1m, default window":  func(c *Server) { c.ConvRetention = time.Minute },
		"inbox retention 1m, default window": func(c *Server) { c.InboxRetention = time.Minute },
		"window over conv retention":         func(c *Server) { c.DuplicateWindow = c.ConvRetention + time.Second },
	} {
		c := Default()
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted (ConvRetention %v, InboxRetention %v, DuplicateWindow %v), but JetStream refuses the streams",
				name, c.ConvRetention, c.InboxRetention, c.DuplicateWindow)
		}
	}
}

// TestValidatedBoundaryConfigsDeclareStreams declares the streams the way
// `natter serve` does, for configurations at the edges Validate accepts:
// whatever Validate accepts must start.
func TestValidatedBoundaryConfigsDeclareStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded NATS server")
	}
	for name, edit := range map[string]func(c *Server){
		"defaults": func(c *Server) {},
		"smallest": func(c *Server) {
			c.ConvRetention, c.InboxRetention, c.DuplicateWindow = time.Minute, time.Minute, 100*time.Millisecond
		},
		"conv retention minimum": func(c *Server) { c.ConvRetention = time.Minute },
		"max deliver 1":          func(c *Server) { c.MaxDeliver = 1 },
		"token ttl 1s":           func(c *Server) { c.AccessTokenTTL = time.Second },
		"stream max bytes 1 MiB": func(c *Server) { c.StreamMaxBytes = 1 << 20 },
	} {
		c := Default()
		edit(&c)
		if err := c.Validate(); err != nil {
			continue // refused: nothing to start
		}
		t.Run(name, func(t *testing.T) {
			node, err := natsnode.Start(natsnode.Options{StoreDir: t.TempDir(), SyncInterval: c.SyncInterval})
			if err != nil {
				t.Fatal(err)
			}
			defer node.Shutdown()
			nc, err := node.Connect("config-test")
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = streams.Ensure(ctx, js, streams.Setup{
				Limits: streams.Limits{Replicas: 1, ConvMaxAge: c.ConvRetention, InboxMaxAge: c.InboxRetention,
					MaxBytes: c.StreamMaxBytes, DuplicateWindow: c.DuplicateWindow},
				Tuning:   streams.ConsumerTuning{MaxAckPending: c.MaxAckPending, MaxDeliver: c.MaxDeliver, AckWait: 30 * time.Second},
				TokenTTL: c.AccessTokenTTL,
			})
			if err != nil {
				t.Fatalf("Validate accepted %s but the streams cannot be declared: %v", name, err)
			}
		})
	}
}

func TestRegisterFlags(t *testing.T) {
	c := Default()
	fs := flag.NewFlagSet("natter", flag.ContinueOnError)
	c.RegisterFlags(fs)
	err := fs.Parse([]string{
		"--http", "127.0.0.1:9", "--data", "/tmp/x", "--fsync", "always", "--rate-limit", "off",
		"--allowed-origins", " https://a.example , ,https://b.example,", "--send-burst", "5", "--send-rate", "0.5",
		"--inbox-retention", "48h", "--stream-max-bytes", "2097152", "--read-limit", "70000", "--max-deliver", "3",
		"--log-level", "debug", "--pprof",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:9" || c.DataDir != "/tmp/x" || c.Fsync != FsyncAlways || c.RateLimit ||
		c.SendBurst != 5 || c.SendRate != 0.5 || c.InboxRetention != 48*time.Hour || c.StreamMaxBytes != 2<<20 ||
		c.ReadLimit != 70000 || c.MaxDeliver != 3 || c.LogLevel != "debug" || !c.Pprof {
		t.Errorf("flags not applied: %+v", c)
	}
	if len(c.AllowedOrigins) != 2 || c.AllowedOrigins[0] != "https://a.example" || c.AllowedOrigins[1] != "https://b.example" {
		t.Errorf("origins %q", c.AllowedOrigins)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"on", "true"} {
		c := Default()
		c.RateLimit = false
		fs := flag.NewFlagSet("natter", flag.ContinueOnError)
		c.RegisterFlags(fs)
		if err := fs.Parse([]string{"--rate-limit", v}); err != nil || !c.RateLimit {
			t.Errorf("--rate-limit %s: %v %v", v, c.RateLimit, err)
		}
	}
	c = Default()
	fs = flag.NewFlagSet("natter", flag.ContinueOnError)
	fs.SetOutput(&strings.Builder{})
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--rate-limit", "maybe"}); err == nil {
		t.Error("--rate-limit maybe accepted")
	}
}

func TestPostgresSettings(t *testing.T) {
	c := Default()
	fs := flag.NewFlagSet("natter", flag.ContinueOnError)
	c.RegisterFlags(fs)
	const u = "postgres://natter:s3cr3t@db.example:5432/natter"
	if err := fs.Parse([]string{"--store", "postgres", "--postgres-url", u}); err != nil {
		t.Fatal(err)
	}
	if c.Store != StorePostgres || c.PostgresURL != u {
		t.Fatalf("flags not applied: store %q url %q", c.Store, c.PostgresURL)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// An invalid setting next to the URL: the error names it, never the password.
	c.Fsync = "sometimes"
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("Validate = %v, want an error without the password", err)
	}
}
