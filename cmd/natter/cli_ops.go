package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// opsFlags are the flags of the operator commands: the NATS login of
// natter status, and --json.
type opsFlags struct {
	fs    *flag.FlagSet
	login natsLogin
	json  *bool
}

func newOpsFlags(name, args string) opsFlags {
	fs := flag.NewFlagSet("natter "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: natter %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return opsFlags{fs: fs, login: addNATSLoginFlags(fs), json: fs.Bool("json", false, "print JSON for scripts instead of tables")}
}

// parse parses flags before and after the positional arguments.
func (o opsFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := o.fs.Parse(args); err != nil {
			return nil, err
		}
		if args = o.fs.Args(); len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

type streamRow struct {
	Stream    string        `json:"stream"`
	Messages  uint64        `json:"messages"`
	Bytes     uint64        `json:"bytes"`
	FirstSeq  uint64        `json:"first_seq"`
	LastSeq   uint64        `json:"last_seq"`
	Consumers []consumerRow `json:"consumers"`
}

type consumerRow struct {
	Consumer    string `json:"consumer"`
	State       string `json:"state"`
	Lag         uint64 `json:"lag"`
	AckPending  int    `json:"ack_pending"`
	Redelivered int    `json:"redelivered"`
	AckFloor    uint64 `json:"ack_floor"`
}

// cliStreams prints every stream of the node with its consumers and how
// far behind each is, and how many dead letters wait.
func cliStreams(ctx context.Context, args []string, cio cliIO) error {
	o := newOpsFlags("streams", "[--nats URL --data DIR | --password PW | --creds FILE] [--json]")
	if _, err := o.parse(args); err != nil {
		return err
	}
	nc, js, err := o.login.connect("natter streams")
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var rows []streamRow
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		st := s.CachedInfo().State
		row := streamRow{Stream: name, Messages: st.Msgs, Bytes: st.Bytes, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, Consumers: []consumerRow{}}
		infos := s.ListConsumers(ctx)
		for i := range infos.Info() {
			row.Consumers = append(row.Consumers, consumerRow{Consumer: i.Name, State: consumerState(i), Lag: i.NumPending,
				AckPending: i.NumAckPending, Redelivered: i.NumRedelivered, AckFloor: i.AckFloor.Stream})
		}
		if err := infos.Err(); err != nil {
			return fmt.Errorf("consumers of %s: %w", name, err)
		}
		rows = append(rows, row)
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list streams: %w", err)
	}
	slices.SortFunc(rows, func(a, b streamRow) int { return strings.Compare(a.Stream, b.Stream) })
	if *o.json {
		return printJSON(cio.out, rows)
	}
	st := newTable(cio.out)
	st.SetTitle("streams")
	st.AppendHeader(table.Row{"stream", "messages", "bytes", "first seq", "last seq"})
	ct := newTable(cio.out)
	ct.SetTitle("consumers (lag: events not yet delivered to it)")
	ct.AppendHeader(table.Row{"stream", "consumer", "state", "lag", "ack pending", "redelivered", "ack floor"})
	dead := uint64(0)
	for _, r := range rows {
		st.AppendRow(table.Row{r.Stream, r.Messages, humanBytes(r.Bytes), r.FirstSeq, r.LastSeq})
		for _, c := range r.Consumers {
			ct.AppendRow(table.Row{r.Stream, c.Consumer, c.State, c.Lag, c.AckPending, c.Redelivered, c.AckFloor})
		}
		if r.Stream == streams.StreamDeadLetter {
			dead = r.Messages
		}
	}
	st.Render()
	ct.Render()
	fmt.Fprintf(cio.out, "dead letters: %d", dead)
	if dead > 0 {
		fmt.Fprint(cio.out, " (natter deadletter ls)")
	}
	fmt.Fprintln(cio.out)
	return nil
}

const deadLetterHelp = `Usage: natter deadletter ls | show SEQ | replay SEQ  [--nats URL --data DIR ...] [--json]

A consumer dead-letters an event of CONV it gave up on (it does not
decode, or it failed --max-deliver times) onto DEADLETTER, subject
natter.dlq.<consumer>, with the reason (Natter-Error), the original
subject and CONV sequence (Natter-Origin-Subject, Natter-Origin-Seq) and
the number of tries (Natter-Deliveries); the event itself is terminated.

  ls           every dead letter: seq, when, consumer, original subject, reason
  show SEQ     one dead letter, headers and record
  replay SEQ   put the record back onto its original CONV subject, then
               delete the dead letter

Replay never doubles: it publishes with Nats-Msg-Id natter-replay:<SEQ>,
so a replay repeated within CONV's duplicate window (after a crash between
the publish and the delete) is dropped by JetStream, and the dead letter
is deleted once its record is back, so a later replay finds nothing. It
replays only records whose every consumer's effect is idempotent:
delivered/read statuses (natter.conv.rcpt.*), which the receipts consumer
applies only when they move a status forward (one event per change, never
a second) and which persist and fanout skip; and only if no event derived
from the record is in INBOX (the consumer publishes events before it
stores the new status, so it may have given up half-way: replay reads the
receipt events stored between the record and its dead letter, and refuses
if one came from it). It refuses messages and
deletions: a message put back onto natter.conv.msg.* would be taken by the
sequencer as the conversation's last (it reads its seq from there) and
would be fanned out to devices that already have it; a deletion would be
sent to devices again. Fix their cause, then read them with show.

Flags:
`

// cliDeadLetter lists, shows and replays dead letters.
func cliDeadLetter(ctx context.Context, args []string, cio cliIO) error {
	o := newOpsFlags("deadletter", "")
	o.fs.Usage = func() {
		fmt.Fprint(o.fs.Output(), deadLetterHelp)
		o.fs.PrintDefaults()
	}
	pos, err := o.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || (pos[0] == "ls") != (len(pos) == 1) || len(pos) > 2 {
		o.fs.Usage()
		return errors.New("natter deadletter: ls, show SEQ or replay SEQ")
	}
	var seq uint64
	if len(pos) == 2 {
		if seq, err = strconv.ParseUint(pos[1], 10, 64); err != nil || seq == 0 {
			return fmt.Errorf("natter deadletter %s: SEQ is a dead letter's number from natter deadletter ls, not %q", pos[0], pos[1])
		}
	}
	nc, js, err := o.login.connect("natter deadletter")
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dlq, err := js.Stream(ctx, streams.StreamDeadLetter)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", streams.StreamDeadLetter, err)
	}
	switch pos[0] {
	case "ls":
		return deadLetterList(ctx, dlq, cio.out, *o.json)
	case "show":
		m, err := getDeadLetter(ctx, dlq, seq)
		if err != nil {
			return err
		}
		dl := toDeadLetter(m)
		if *o.json {
			return printJSON(cio.out, dl)
		}
		fmt.Fprintf(cio.out, "dead letter %d, %s\nconsumer:   %s\norigin:     %s (CONV seq %s)\ndeliveries: %s\nerror:      %s\nrecord:\n%s\n",
			dl.Seq, dl.Time.Local().Format(time.RFC3339), dl.Consumer, dl.OriginSubject, dl.OriginSeq, dl.Deliveries, dl.Error, indentJSON(m.Data))
		return nil
	case "replay":
		return deadLetterReplay(ctx, js, dlq, seq, cio.out)
	}
	o.fs.Usage()
	return fmt.Errorf("natter deadletter: unknown action %q (ls, show SEQ or replay SEQ)", pos[0])
}

// deadLetter is one dead letter as ls and show print it.
type deadLetter struct {
	Seq           uint64          `json:"seq"`
	Time          time.Time       `json:"time"`
	Consumer      string          `json:"consumer"`
	OriginSubject string          `json:"origin_subject"`
	OriginSeq     string          `json:"origin_seq"`
	Deliveries    string          `json:"deliveries"`
	Error         string          `json:"error"`
	Record        json.RawMessage `json:"record,omitempty"`
}

func toDeadLetter(m *jetstream.RawStreamMsg) deadLetter {
	d := deadLetter{Seq: m.Sequence, Time: m.Time, Consumer: strings.TrimPrefix(m.Subject, streams.DeadLetterSubject("")),
		OriginSubject: m.Header.Get(streams.HeaderOrigin), OriginSeq: m.Header.Get(streams.HeaderOriginSeq),
		Deliveries: m.Header.Get(streams.HeaderDeliveries), Error: m.Header.Get(streams.HeaderError)}
	if json.Valid(m.Data) {
		d.Record = m.Data
	} else {
		d.Record, _ = json.Marshal(string(m.Data))
	}
	return d
}

func getDeadLetter(ctx context.Context, dlq jetstream.Stream, seq uint64) (*jetstream.RawStreamMsg, error) {
	m, err := dlq.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("no dead letter %d (replayed already, or aged out; natter deadletter ls lists them)", seq)
	}
	if err != nil {
		return nil, fmt.Errorf("read dead letter %d: %w", seq, err)
	}
	return m, nil
}

func deadLetterList(ctx context.Context, dlq jetstream.Stream, out io.Writer, asJSON bool) error {
	info, err := dlq.Info(ctx)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", streams.StreamDeadLetter, err)
	}
	all := []deadLetter{}
	if info.State.Msgs > 0 {
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			m, err := dlq.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue // replayed (deleted)
			}
			if err != nil {
				return fmt.Errorf("read dead letter %d: %w", seq, err)
			}
			all = append(all, toDeadLetter(m))
		}
	}
	if asJSON {
		return printJSON(out, all)
	}
	if len(all) == 0 {
		fmt.Fprintln(out, "no dead letters")
		return nil
	}
	t := newTable(out)
	t.AppendHeader(table.Row{"seq", "when", "consumer", "origin", "tries", "error"})
	for _, d := range all {
		t.AppendRow(table.Row{d.Seq, d.Time.Local().Format("2006-01-02 15:04:05"), d.Consumer, d.OriginSubject + " #" + d.OriginSeq, d.Deliveries, short(d.Error, 60)})
	}
	t.Render()
	return nil
}

// deadLetterReplay puts a status record back onto its CONV subject and
// deletes its dead letter (deadLetterHelp says why that cannot double).
func deadLetterReplay(ctx context.Context, js jetstream.JetStream, dlq jetstream.Stream, seq uint64, out io.Writer) error {
	m, err := getDeadLetter(ctx, dlq, seq)
	if err != nil {
		return err
	}
	origin := m.Header.Get(streams.HeaderOrigin)
	kind, _ := streams.ParseConvSubject(origin)
	switch kind {
	case streams.KindReceipt:
	case streams.KindMessage, streams.KindDelete:
		return fmt.Errorf("dead letter %d is a %s (%s): replaying it could double it for devices that have it; see natter deadletter -h", seq, kindName(kind), origin)
	default:
		return fmt.Errorf("dead letter %d has no replayable origin subject (%q); see natter deadletter -h", seq, origin)
	}
	if published, err := receiptPublished(ctx, js, m); err != nil {
		return err
	} else if published {
		return fmt.Errorf("dead letter %d: the receipts consumer published its events before it gave up (the reader's inbox holds an event from CONV %s); replaying it would send them twice, so it stays", seq, m.Header.Get(streams.HeaderOriginSeq))
	}
	rm := nats.NewMsg(origin)
	rm.Data = m.Data
	rm.Header.Set(jetstream.MsgIDHeader, "natter-replay:"+strconv.FormatUint(seq, 10))
	ack, err := js.PublishMsg(ctx, rm)
	if err != nil {
		return fmt.Errorf("replay dead letter %d onto %s: %w (nothing deleted; safe to retry)", seq, origin, err)
	}
	if err := dlq.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("dead letter %d replayed as CONV %d but not deleted: %w (replaying it again within the duplicate window is dropped as a duplicate)", seq, ack.Sequence, err)
	}
	dup := ""
	if ack.Duplicate {
		dup = " (it had been replayed already: not published twice)"
	}
	fmt.Fprintf(out, "dead letter %d replayed onto %s as CONV seq %d%s, and deleted\n", seq, origin, ack.Sequence, dup)
	return nil
}

// receiptPublished says whether the receipts consumer published any
// event of a dead-lettered status before it gave up on it (it publishes
// events first and advances the stored state second, and a batch may
// fail half-published). A record it cannot decode produced no event.
// Otherwise the events derived from it carry its CONV sequence in
// Natter-Src and were stored between the record's own time and the dead
// letter's: read every user's receipt events in that window.
func receiptPublished(ctx context.Context, js jetstream.JetStream, dead *jetstream.RawStreamMsg) (bool, error) {
	rc, err := streams.DecodeReceipt(dead.Data)
	if err != nil || rc.UserID == "" || rc.Seq < 1 || schema.ValidateStatus(rc.Status) != nil {
		return false, nil
	}
	origin, err := strconv.ParseUint(dead.Header.Get(streams.HeaderOriginSeq), 10, 64)
	if err != nil {
		return false, fmt.Errorf("dead letter %d has no origin sequence: %w", dead.Sequence, err)
	}
	// From the record's time if CONV still has it, else from a day
	// before the dead letter: far more than every retry takes.
	from := dead.Time.Add(-24 * time.Hour)
	if conv, err := js.Stream(ctx, streams.StreamConv); err == nil {
		if m, err := conv.GetMsg(ctx, origin); err == nil {
			from = m.Time.Add(-time.Second)
		}
	}
	until := dead.Time.Add(time.Second)
	filter := streams.InboxSubject("*", streams.InboxReceipts)
	cons, err := js.OrderedConsumer(ctx, streams.StreamInbox, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from})
	if err != nil {
		return false, fmt.Errorf("read %s: %w", filter, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", filter, err)
	}
	for left := info.NumPending; left > 0; {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			return false, fmt.Errorf("read %s: %w", filter, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return false, fmt.Errorf("read %s: %w", filter, err)
		}
		if md.Timestamp.After(until) {
			return false, nil
		}
		if src, _ := strconv.ParseUint(m.Headers().Get(streams.HeaderSource), 10, 64); src == origin {
			return true, nil
		}
		left = md.NumPending
	}
	return false, nil
}

func kindName(k streams.Kind) string {
	switch k {
	case streams.KindMessage:
		return "message"
	case streams.KindDelete:
		return "deletion"
	case streams.KindReceipt:
		return "status"
	}
	return "record"
}

func indentJSON(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return strconv.Quote(string(b))
	}
	out, _ := json.MarshalIndent(v, "  ", "  ")
	return "  " + string(out)
}
