package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/natsnode"
	"github.com/natter-chat/natter/streams"
)

// status reads a node through its NATS port and shows, per consumer,
// whether an operator paused it.
func TestStatusShowsStreamsAndPausedConsumers(t *testing.T) {
	data := t.TempDir()
	op, err := natsnode.LoadOrCreateOperator(data)
	if err != nil {
		t.Fatal(err)
	}
	node, err := natsnode.Start(natsnode.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", SyncInterval: time.Second, Operator: op})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	nc, err := nats.Connect(node.ClientURL(), nats.UserInfo(op.User, op.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := streams.Ensure(ctx, js, streams.Setup{
		Limits:   streams.Limits{Replicas: 1, ConvMaxAge: time.Hour, InboxMaxAge: time.Hour, MaxBytes: -1, DuplicateWindow: time.Minute},
		Tuning:   streams.ConsumerTuning{MaxAckPending: 100, MaxDeliver: 3, AckWait: time.Second},
		TokenTTL: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.PauseConsumer(ctx, streams.StreamConv, streams.ConsumerFanout, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	// Without credentials the node refuses status; with its data
	// directory (where the operator password is) it answers.
	if err := status(ctx, []string{"--nats", node.ClientURL(), "--data", t.TempDir()}, io.Discard); err == nil {
		t.Fatal("status connected without credentials")
	}
	if err := status(ctx, []string{"--nats", node.ClientURL(), "--password", "wrong"}, io.Discard); err == nil {
		t.Fatal("status connected with a wrong password")
	}
	if err := status(ctx, []string{"--nats", node.ClientURL(), "--data", data}, &out); err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		for _, name := range []string{streams.StreamConv, streams.StreamInbox, streams.ConsumerPersist, streams.ConsumerFanout, streams.ConsumerReceipts} {
			if strings.HasPrefix(strings.TrimSpace(strings.Trim(line, "| ")), name+" ") {
				rows[name] = line
			}
		}
	}
	for _, name := range []string{streams.StreamConv, streams.StreamInbox, streams.ConsumerPersist, streams.ConsumerFanout, streams.ConsumerReceipts} {
		if rows[name] == "" {
			t.Errorf("no row for %s in:\n%s", name, out.String())
		}
	}
	if !strings.Contains(rows[streams.ConsumerFanout], "paused (") || !strings.Contains(rows[streams.ConsumerPersist], "running") {
		t.Errorf("fanout was paused, persist was not; status says:\n%s", out.String())
	}
}
