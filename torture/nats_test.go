//go:build torture

package torture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/internal/testnode"
	"github.com/natter-chat/natter/streams"
)

// natsView reads a node's streams and consumers the way an operator does
// with the nats CLI, through the NATS port a node opens with --nats-listen.
// It reconnects by itself after the node restarts.
type natsView struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func dialNATS(url string) (*natsView, error) {
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &natsView{nc: nc, js: js}, nil
}

func (v *natsView) Close() { v.nc.Close() }

// lag is how far a consumer is behind CONV's last sequence: what it has
// not acknowledged yet.
type lag struct {
	convLast, ackFloor uint64
	pending, inFlight  uint64 // not yet delivered; delivered, not acknowledged
}

func (l lag) behind() uint64 { return l.convLast - min(l.ackFloor, l.convLast) }

func (v *natsView) lag(ctx context.Context, consumer string) (lag, error) {
	s, err := v.js.Stream(ctx, streams.StreamConv)
	if err != nil {
		return lag{}, err
	}
	c, err := v.js.Consumer(ctx, streams.StreamConv, consumer)
	if err != nil {
		return lag{}, err
	}
	i := c.CachedInfo()
	return lag{convLast: s.CachedInfo().State.LastSeq, ackFloor: i.AckFloor.Stream, pending: i.NumPending, inFlight: uint64(i.NumAckPending)}, nil
}

// streamMsgs is how many messages a stream holds.
func (v *natsView) streamMsgs(ctx context.Context, name string) (uint64, error) {
	s, err := v.js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.Msgs, nil
}

// stored is a message as a stream holds it.
type stored struct {
	Type            string `json:"type"` // inbox events only
	MessageID       string `json:"message_id"`
	ConversationID  string `json:"conversation_id"`
	Seq             int64  `json:"seq"`
	SenderID        string `json:"sender_id"`
	RecipientID     string `json:"recipient_id"`
	ClientMessageID string `json:"client_message_id"`
	ServerTS        int64  `json:"server_ts"`
	streamSeq       uint64
}

// read returns every message of stream on subject (wildcards allowed),
// in stream order, through an ordered consumer.
func (v *natsView) read(ctx context.Context, stream, subject string) ([]stored, error) {
	s, err := v.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	if s.CachedInfo().State.Msgs == 0 {
		return nil, nil
	}
	c, err := v.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, err
	}
	var out []stored
	for {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return out, err
		}
		n, last := 0, false
		for m := range batch.Messages() {
			n++
			var st stored
			if err := json.Unmarshal(m.Data(), &st); err != nil {
				return out, fmt.Errorf("%s: decode %s: %w", stream, m.Subject(), err)
			}
			md, err := m.Metadata()
			if err != nil {
				return out, err
			}
			st.streamSeq = md.Sequence.Stream
			out = append(out, st)
			last = md.NumPending == 0
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return out, err
		}
		if last || n == 0 {
			return out, nil
		}
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
}

// TestNATSListenerRequiresCredentials attacks a node's NATS port as an
// outsider: without the operator credentials nothing connects, and with
// them (from the data directory) the streams are there, for the nats
// library and for `natter status` alike.
func TestNATSListenerRequiresCredentials(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := startDuo(ctx, t, testnode.Options{NATS: true})
	bare := "nats://" + d.node.NATSURL()[strings.LastIndex(d.node.NATSURL(), "@")+1:]
	if !strings.Contains(d.node.NATSURL(), "@") {
		t.Fatalf("no operator credentials in %s", d.node.DataDir())
	}
	if nc, err := nats.Connect(bare, nats.NoReconnect(), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("anonymous connection to the NATS port accepted")
	}
	if nc, err := nats.Connect(bare, nats.UserInfo("operator", "guess"), nats.NoReconnect(), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("wrong password accepted on the NATS port")
	}
	if _, err := d.view.streamMsgs(ctx, streams.StreamConv); err != nil {
		t.Fatalf("operator cannot read CONV: %v", err)
	}
	bin, err := testnode.Binary()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, bin, "status", "--nats", bare, "--data", t.TempDir()).CombinedOutput(); err == nil {
		t.Fatalf("natter status connected without credentials:\n%s", out)
	}
	out, err := exec.CommandContext(ctx, bin, "status", "--nats", bare, "--data", d.node.DataDir()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), streams.ConsumerFanout) {
		t.Fatalf("natter status with the data directory's credentials: %v\n%s", err, out)
	}
}
