package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/natsnode"
	"github.com/natter-chat/natter/streams"
)

// status prints natter's streams and consumers from a running node's NATS
// (started with --nats-listen): how much each holds and how far behind
// each consumer is.
func status(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("natter status", flag.ContinueOnError)
	login := addNATSLoginFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	nc, js, err := login.connect("natter status")
	if err != nil {
		return err
	}
	defer nc.Close()
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
	for _, name := range []string{streams.ConsumerPersist, streams.ConsumerFanout, streams.ConsumerReceipts, streams.ConsumerErase} {
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

// natsLogin is how an operator command (status, streams, deadletter)
// reaches a node's NATS: its flags, and connect.
type natsLogin struct {
	url, dataDir, user, password, creds *string
}

func addNATSLoginFlags(fs *flag.FlagSet) natsLogin {
	return natsLogin{
		url:      fs.String("nats", "nats://127.0.0.1:4222", "NATS URL of a node started with --nats-listen"),
		dataDir:  fs.String("data", "natter-data", "the node's data directory, where its operator credentials are (keys/nats-operator.password)"),
		user:     fs.String("user", natsnode.OperatorUser, "NATS user, with --password"),
		password: fs.String("password", "", "NATS password (instead of the one in --data)"),
		creds:    fs.String("creds", "", "NATS credentials file (instead of a user and password)"),
	}
}

// connect logs in to the node's NATS as an operator, named name.
func (l natsLogin) connect(name string) (*nats.Conn, jetstream.JetStream, error) {
	auth, err := statusAuth(*l.url, *l.dataDir, *l.user, *l.password, *l.creds)
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(*l.url, nats.Timeout(5*time.Second), nats.Name(name), auth)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s (is natter running with --nats-listen? are these its credentials?): %w", *l.url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// statusAuth picks how an operator command logs in: credentials in the
// URL, then --creds, then --password, then the operator password in the
// data directory; none at all (a node started with --nats-insecure) when
// the data directory has none.
func statusAuth(url, dataDir, user, password, creds string) (nats.Option, error) {
	none := func(*nats.Options) error { return nil }
	switch {
	case strings.Contains(url, "@"):
		return none, nil
	case creds != "":
		return nats.UserCredentials(creds), nil
	case password != "":
		return nats.UserInfo(user, password), nil
	}
	op, err := natsnode.ReadOperator(dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return none, nil
	}
	if err != nil {
		return nil, err
	}
	return nats.UserInfo(op.User, op.Password), nil
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
