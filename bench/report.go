package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"
	"github.com/jedib0t/go-pretty/v6/text"
)

// Report is the result of one run: --json prints it as one object, the
// summary table shows the same. Sections that do not apply are nil.
type Report struct {
	Scenario string         `json:"scenario"`
	Target   string         `json:"target,omitempty"`
	Params   map[string]any `json:"params"`
	Started  time.Time      `json:"started"`
	// Seconds is the measured window: after warmup, before draining.
	Seconds float64 `json:"seconds"`

	Messages    *Messages    `json:"messages,omitempty"`
	Connections *Connections `json:"connections,omitempty"`
	Catchup     *Catchup     `json:"catchup,omitempty"`
	Latency     Latencies    `json:"latency"`
	// Errors counts errors by code: the server's (error frames, HTTP
	// error bodies) and the bench's own (dial, conn_lost, close_CODE...).
	Errors map[string]int64 `json:"errors"`
	// Server is natter's process over the measured window; Bench is the
	// bench's own, which competes with it for the same cores.
	Server *ProcStats `json:"server,omitempty"`
	Bench  *ProcStats `json:"bench,omitempty"`
}

// Messages counts the messages sent in the measured window: Offered,
// Acked, Failed, Delivered and their rates, and of the same messages the
// ones that went wrong: Unacked, Lost (acked, not delivered when the drain
// ended). WarmupUnacked and WarmupLost are those of the warm-up messages;
// Duplicates is over the whole run. Delivered counts deliveries (one per
// recipient); Lost, WarmupLost and Duplicates must be 0.
type Messages struct {
	Offered         int64   `json:"offered"`
	Acked           int64   `json:"acked"`
	Failed          int64   `json:"failed"`
	Delivered       int64   `json:"delivered"`
	OfferedPerSec   float64 `json:"offered_per_sec"`
	AckedPerSec     float64 `json:"acked_per_sec"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	Unacked         int64   `json:"unacked"`
	Lost            int64   `json:"lost"`
	WarmupUnacked   int64   `json:"warmup_unacked,omitempty"`
	WarmupLost      int64   `json:"warmup_lost,omitempty"`
	Duplicates      int64   `json:"duplicates"`
	// ServerCPUPerDeliveryUS is the server's CPU time per delivery in the
	// window, in microseconds (0 without server statistics).
	ServerCPUPerDeliveryUS float64 `json:"server_cpu_us_per_delivery,omitempty"`
	// ServerCPUPerDeliveryWholeUS is the server's CPU time from the start
	// of the warm-up until every message was delivered, per delivery of
	// the whole run (0 when the drain ran out).
	ServerCPUPerDeliveryWholeUS float64 `json:"server_cpu_us_per_delivery_whole_run,omitempty"`
	// Settled is false when --drain ran out with messages still unacked
	// or undelivered: the server was behind, and Lost may count
	// deliveries that were only late.
	Settled bool `json:"settled"`
}

// Connections describes the idle and churn scenarios.
type Connections struct {
	Requested int   `json:"requested,omitempty"` // idle: connections to hold
	Clients   int   `json:"clients,omitempty"`   // churn: clients churning
	Opened    int64 `json:"opened"`
	Failed    int64 `json:"failed"`
	// Dropped were ended by the server or the network while held.
	Dropped           int64   `json:"dropped"`
	Closed            int64   `json:"closed,omitempty"`
	ConnectsPerSec    float64 `json:"connects_per_sec,omitempty"`
	DisconnectsPerSec float64 `json:"disconnects_per_sec,omitempty"`
	Pings             int64   `json:"pings,omitempty"`
	Pongs             int64   `json:"pongs,omitempty"`
	// ServerRSSPerConn is the growth of the server's RSS from before the
	// first connection (ServerRSSBefore) to the end, divided by the
	// connections held; absent when RSS did not grow.
	ServerRSSBefore  int64   `json:"server_rss_before_bytes,omitempty"`
	ServerRSSPerConn float64 `json:"server_rss_per_conn_bytes,omitempty"`
	// ServerRSSMarginalPerConn is the growth of the server's settled RSS
	// from holding MarginalFrom connections (about half) to holding
	// MarginalTo (all), divided by the difference: unlike
	// ServerRSSPerConn it leaves out what the server held before the
	// first connection (e.g. password hashing garbage from the logins).
	ServerRSSMarginalPerConn float64 `json:"server_rss_marginal_per_conn_bytes,omitempty"`
	MarginalFrom             int64   `json:"server_rss_marginal_from_conns,omitempty"`
	MarginalTo               int64   `json:"server_rss_marginal_to_conns,omitempty"`
	// Presence (idle --presence, after the hold): every connection is
	// closed, then all are opened again; how long from the first close
	// until watchers saw the last account go offline, and from the first
	// dial until they saw the last come online; and how long closing
	// and dialing them all took.
	// KV writes per second to the presence bucket while the connections
	// were held (with --nats-url or --spawn).
	PresenceUsers          int      `json:"presence_users,omitempty"`
	PresenceOnlineSeconds  float64  `json:"presence_online_seconds,omitempty"`
	PresenceOfflineSeconds float64  `json:"presence_offline_seconds,omitempty"`
	PresenceClosingSeconds float64  `json:"presence_closing_seconds,omitempty"`
	PresenceDialingSeconds float64  `json:"presence_dialing_seconds,omitempty"`
	PresenceKVWritesPerSec *float64 `json:"presence_kv_writes_per_sec,omitempty"`
}

// Catchup describes the catchup scenario; its Messages are those sent
// while the devices were offline, its Seconds the replay.
type Catchup struct {
	Devices         int `json:"devices"`
	EventsPerDevice int `json:"events_per_device"`
	// Replayed counts message events read before synced; Missing the
	// acked messages that synced came without (they must be 0: synced is
	// a barrier).
	Replayed     int64   `json:"replayed"`
	Missing      int64   `json:"missing"`
	Duplicates   int64   `json:"duplicates"`
	EventsPerSec float64 `json:"replayed_per_sec"`
}

// Latencies are the distributions a scenario measured.
type Latencies struct {
	SendToAck      *Latency `json:"send_to_ack,omitempty"`
	SendToDelivery *Latency `json:"send_to_delivery,omitempty"`
	// mix: send → delivery of its 1:1 and of its group messages apart.
	DirectDelivery  *Latency `json:"send_to_delivery_direct,omitempty"`
	GroupDelivery   *Latency `json:"send_to_delivery_group,omitempty"`
	ConnectToSynced *Latency `json:"connect_to_synced,omitempty"`
	RoundTrip       *Latency `json:"round_trip,omitempty"`
}

// ProcStats describes a process over the measured window.
type ProcStats struct {
	PID int `json:"pid,omitempty"` // 0 when only its metrics are known
	// PIDs are a spawned cluster's nodes (--nodes), whose figures are summed.
	PIDs []int `json:"pids,omitempty"`
	// Source is where the figures come from: "metrics" (the server's
	// /metrics at MetricsURL) or "proc" (/proc/PID).
	Source     string  `json:"source"`
	MetricsURL string  `json:"metrics_url,omitempty"`
	CPUPercent float64 `json:"cpu_percent"` // of one core
	RSSBytes   int64   `json:"rss_bytes"`   // at the end
	PeakRSS    int64   `json:"peak_rss_bytes"`
	// Counters are the server's own counts over the window (metrics only).
	Counters *ServerCounters `json:"counters,omitempty"`
}

// ServerCounters are what the server counted over the measured window.
type ServerCounters struct {
	// SendsAccepted: natter_messages_in_total{result="sent"}.
	SendsAccepted int64 `json:"sends_accepted"`
	// WSFramesOut: natter_websocket_frames_out_total (events, acks, pongs).
	WSFramesOut int64 `json:"ws_frames_out"`
	// FannedOut: CONV events the fanout consumer finished
	// (natter_consumer_latency_seconds_count{consumer="fanout"}).
	FannedOut int64 `json:"fanned_out"`
}

// Problem reports what a correct server never shows: lost, duplicated or
// missing messages.
func (r *Report) Problem() error {
	var p []string
	if m := r.Messages; m != nil {
		late := ""
		if !m.Settled {
			late = " (or late: the drain timed out)"
		}
		if m.Lost > 0 {
			p = append(p, fmt.Sprintf("%d deliveries lost%s", m.Lost, late))
		}
		if m.WarmupLost > 0 {
			p = append(p, fmt.Sprintf("%d warm-up deliveries lost%s", m.WarmupLost, late))
		}
		if m.Duplicates > 0 {
			p = append(p, fmt.Sprintf("%d duplicate deliveries", m.Duplicates))
		}
	}
	if c := r.Catchup; c != nil {
		if c.Missing > 0 {
			p = append(p, fmt.Sprintf("%d events missing at synced", c.Missing))
		}
		if c.Duplicates > 0 {
			p = append(p, fmt.Sprintf("%d duplicate events", c.Duplicates))
		}
	}
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(p, ", "))
}

// WriteJSON prints r as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	out := *r
	if out.Errors == nil {
		out.Errors = map[string]int64{} // {} rather than null
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// WriteTable prints r as tables for people.
func (r *Report) WriteTable(w io.Writer) error {
	t := table.NewWriter()
	t.SetStyle(table.StyleLight)
	t.SetTitle("natter bench " + r.Scenario)
	t.SetColumnConfigs([]table.ColumnConfig{{Number: 2, Align: text.AlignRight}})
	row := func(k string, v any) { t.AppendRow(table.Row{k, v}) }

	if r.Target != "" {
		row("target", r.Target)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Params)) {
		row(k, r.Params[k])
	}
	row("measured", fmt.Sprintf("%.2f s", r.Seconds))
	if m := r.Messages; m != nil {
		t.AppendSeparator()
		row("offered", countRate(m.Offered, m.OfferedPerSec))
		row("acked", countRate(m.Acked, m.AckedPerSec))
		if m.Failed > 0 {
			row("refused", m.Failed)
		}
		if r.Latency.SendToDelivery != nil {
			row("delivered", countRate(m.Delivered, m.DeliveredPerSec))
			row("lost", m.Lost)
			if m.WarmupLost > 0 {
				row("lost in warm-up", m.WarmupLost)
			}
			row("duplicates (whole run)", m.Duplicates)
		}
		row("unacked", m.Unacked)
		if m.WarmupUnacked > 0 {
			row("unacked in warm-up", m.WarmupUnacked)
		}
		if m.ServerCPUPerDeliveryUS > 0 {
			row("server CPU per delivery", fmt.Sprintf("%.0f µs", m.ServerCPUPerDeliveryUS))
		}
		if m.ServerCPUPerDeliveryWholeUS > 0 {
			row("  over the whole run", fmt.Sprintf("%.0f µs", m.ServerCPUPerDeliveryWholeUS))
		}
		if !m.Settled && r.Latency.SendToDelivery != nil {
			row("drained", "no: server behind")
		}
	}
	if c := r.Connections; c != nil {
		t.AppendSeparator()
		if c.Clients > 0 {
			row("connects", countRate(c.Opened, c.ConnectsPerSec))
			row("disconnects", countRate(c.Closed, c.DisconnectsPerSec))
			row("failed", c.Failed)
		} else {
			row("connections", fmt.Sprintf("%d of %d opened", c.Opened, c.Requested))
			row("failed", c.Failed)
			row("dropped", c.Dropped)
		}
		if c.Pings > 0 {
			row("pings / pongs", fmt.Sprintf("%d / %d", c.Pings, c.Pongs))
		}
		if c.ServerRSSPerConn > 0 {
			row("server RSS per conn", bytesIEC(int64(c.ServerRSSPerConn)))
		}
		if c.ServerRSSMarginalPerConn > 0 {
			row(fmt.Sprintf("server RSS per conn, marginal %d → %d conns", c.MarginalFrom, c.MarginalTo),
				bytesIEC(int64(c.ServerRSSMarginalPerConn)))
		}
		if c.PresenceUsers > 0 {
			row(fmt.Sprintf("presence: all close (in %.2f s), all %d accounts offline after", c.PresenceClosingSeconds, c.PresenceUsers), fmt.Sprintf("%.2f s", c.PresenceOfflineSeconds))
			row(fmt.Sprintf("presence: all dial (in %.2f s), all %d accounts online after", c.PresenceDialingSeconds, c.PresenceUsers), fmt.Sprintf("%.2f s", c.PresenceOnlineSeconds))
		}
		if c.PresenceKVWritesPerSec != nil {
			row("presence KV writes at idle", fmt.Sprintf("%.2f/s", *c.PresenceKVWritesPerSec))
		}
	}
	if c := r.Catchup; c != nil {
		t.AppendSeparator()
		row("devices × events", fmt.Sprintf("%d × %d", c.Devices, c.EventsPerDevice))
		row("replayed", countRate(c.Replayed, c.EventsPerSec))
		row("missing", c.Missing)
		row("duplicates", c.Duplicates)
	}
	for _, p := range []struct {
		name string
		s    *ProcStats
	}{{"server", r.Server}, {"bench", r.Bench}} {
		if p.s != nil {
			t.AppendSeparator()
			src := "/proc"
			if p.s.Source == sourceMetrics {
				src = "its metrics"
			}
			if n := len(p.s.PIDs); n > 1 {
				src = fmt.Sprintf("/proc, %d nodes summed", n)
			}
			row(p.name+" figures from", src)
			row(p.name+" CPU", fmt.Sprintf("%.0f%%", p.s.CPUPercent))
			peak := "-"
			if p.s.PeakRSS > 0 {
				peak = bytesIEC(p.s.PeakRSS)
			}
			row(p.name+" RSS (peak)", fmt.Sprintf("%s (%s)", bytesIEC(p.s.RSSBytes), peak))
			if c := p.s.Counters; c != nil {
				row(p.name+" sends accepted", c.SendsAccepted)
				row(p.name+" events fanned out", c.FannedOut)
				row(p.name+" WebSocket frames out", c.WSFramesOut)
			}
		}
	}
	t.AppendSeparator()
	if len(r.Errors) == 0 {
		row("errors", 0)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		row("error "+k, r.Errors[k])
	}
	if _, err := fmt.Fprintln(w, t.Render()); err != nil {
		return err
	}

	lt := table.NewWriter()
	lt.SetStyle(table.StyleLight)
	lt.AppendHeader(table.Row{"latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"})
	cols := []table.ColumnConfig{}
	for i := 2; i <= 7; i++ {
		cols = append(cols, table.ColumnConfig{Number: i, Align: text.AlignRight})
	}
	lt.SetColumnConfigs(cols)
	for _, l := range []struct {
		name string
		l    *Latency
	}{
		{"send → ack", r.Latency.SendToAck},
		{"send → delivery", r.Latency.SendToDelivery},
		{"  of 1:1 messages", r.Latency.DirectDelivery},
		{"  of group messages", r.Latency.GroupDelivery},
		{"connect → synced", r.Latency.ConnectToSynced},
		{"round trip", r.Latency.RoundTrip},
	} {
		if l.l != nil {
			lt.AppendRow(table.Row{l.name, l.l.Count, msStr(l.l.P50), msStr(l.l.P90), msStr(l.l.P99), msStr(l.l.P999), msStr(l.l.Max)})
		}
	}
	if lt.Length() == 0 {
		return nil
	}
	_, err := fmt.Fprintln(w, lt.Render())
	return err
}

func countRate(n int64, perSec float64) string {
	return fmt.Sprintf("%d (%.0f/s)", n, perSec)
}

func msStr(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// bytesIEC renders n bytes with a binary unit.
func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// perSec is n per second of d.
func perSec(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
