package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/streams"
)

// status prints natter's streams and consumers from a running node's NATS
// (started with --nats-listen): how much each holds and how far behind
// each consumer is.
func status(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("natter status", flag.ContinueOnError)
	url := fs.String("nats", "nats://127.0.0.1:4222", "NATS URL of a node started with --nats-listen")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nc, err := nats.Connect(*url, nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("connect to %s (is natter running with --nats-listen?): %w", *url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	st := table.NewWriter()
	st.SetOutputMirror(out)
	st.SetTitle("streams")
	st.AppendHeader(table.Row{"stream", "messages", "bytes", "first seq", "last seq", "subjects"})
	for _, name := range []string{streams.StreamConv, streams.StreamInbox, streams.StreamDeadLetter} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		i := s.CachedInfo().State
		st.AppendRow(table.Row{name, i.Msgs, humanBytes(i.Bytes), i.FirstSeq, i.LastSeq, i.NumSubjects})
	}
	st.Render()

	ct := table.NewWriter()
	ct.SetOutputMirror(out)
	ct.SetTitle("consumers on " + streams.StreamConv)
	ct.AppendHeader(table.Row{"consumer", "state", "pending", "ack pending", "redelivered", "ack floor", "last delivered"})
	for _, name := range []string{streams.ConsumerPersist, streams.ConsumerFanout, streams.ConsumerReceipts} {
		c, err := js.Consumer(ctx, streams.StreamConv, name)
		if err != nil {
			return fmt.Errorf("consumer %s: %w", name, err)
		}
		i := c.CachedInfo()
		ct.AppendRow(table.Row{name, consumerState(i), i.NumPending, i.NumAckPending, i.NumRedelivered, i.AckFloor.Stream, i.Delivered.Stream})
	}
	ct.Render()
	return nil
}

// consumerState says whether a consumer is running or paused (with the
// nats CLI: `nats consumer pause CONV fanout`), and for how long.
func consumerState(i *jetstream.ConsumerInfo) string {
	if i.Paused {
		return fmt.Sprintf("paused (%s left)", i.PauseRemaining.Round(time.Second))
	}
	return "running"
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
