package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of CPU times in /proc/PID/stat: 100 on
// every Linux architecture Go supports (sysconf needs cgo to ask).
const clockTicks = 100

// procSample is one reading of a process's CPU time and memory.
type procSample struct {
	At      time.Time
	CPU     time.Duration // user + system, since the process started
	RSS     int64         // resident set, bytes
	PeakRSS int64         // high-water mark of RSS, bytes
}

// readProc samples process pid from /proc (Linux only).
func readProc(pid int) (procSample, error) {
	s := procSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read process stats: %w", err)
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// fields after its closing parenthesis, where state is field 3.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("parse /proc/%d/stat: bad CPU times", pid)
	}
	s.CPU = time.Duration(utime+stime) * time.Second / clockTicks

	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read process status: %w", err)
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "VmRSS":
			dst = &s.RSS
		case "VmHWM":
			dst = &s.PeakRSS
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return s, fmt.Errorf("parse /proc/%d/status %s: %w", pid, key, err)
		}
		*dst = kb << 10
	}
	return s, sc.Err()
}

// readProcs is readProc summed over the processes of a cluster's nodes
// (CPU, RSS and peak RSS add up; one process is readProc).
func readProcs(pids []int) (procSample, error) {
	var sum procSample
	for i, pid := range pids {
		s, err := readProc(pid)
		if err != nil {
			return sum, err
		}
		if i == 0 {
			sum.At = s.At
		}
		sum.CPU += s.CPU
		sum.RSS += s.RSS
		sum.PeakRSS += s.PeakRSS
	}
	return sum, nil
}

// cpuPercent is the CPU the process used between two samples, in percent
// of one core.
func cpuPercent(a, b procSample) float64 {
	wall := b.At.Sub(a.At)
	if wall <= 0 {
		return 0
	}
	return 100 * float64(b.CPU-a.CPU) / float64(wall)
}

// procWatch samples a process at the start and the end of the measured
// window: natter's from its /metrics when those can be read (source
// "metrics"), else from /proc when its pid is known (source "proc"). A
// failed read is logged once and leaves the statistics out of the
// report.
type procWatch struct {
	// pids are the processes watched: one, or a cluster's nodes, summed.
	pids    []int
	metrics *metricsReader // nil: /proc
	start   procSample
	counts  serverCounters // at start, from metrics
	ok      bool
}

// Sources of server figures, as reports name them.
const (
	sourceMetrics = "metrics"
	sourceProc    = "proc"
)

// newProcWatch starts watching processes pids (summed) through /proc;
// none watches nothing.
func newProcWatch(log *slog.Logger, pids ...int) *procWatch {
	w := &procWatch{pids: pids}
	if len(pids) == 0 || pids[0] == 0 {
		w.pids = nil
		return w
	}
	s, err := readProcs(pids)
	if err != nil {
		log.Warn("no process statistics", "pids", pids, "err", err)
		return w
	}
	w.start, w.ok = s, true
	return w
}

// watchServer watches natter: through its metrics when the target has a
// metrics URL that answers, else through /proc when its pid is known.
func (e *env) watchServer() *procWatch {
	if e.target != nil && e.target.metricsURL != "" {
		w := &procWatch{pids: e.serverPIDs(), metrics: newMetricsReader(e.target.metricsURL)}
		s, c, err := w.metrics.read(context.Background())
		if err == nil {
			w.start, w.counts, w.ok = s, c, true
			return w
		}
		e.log.Warn("server figures not from its metrics", "url", e.target.metricsURL, "err", err)
	}
	if len(e.serverPIDs()) == 0 {
		e.log.Warn("no server statistics: pass --metrics-url or --pid, or --spawn")
	}
	return newProcWatch(e.log, e.serverPIDs()...)
}

// read samples the process now.
func (w *procWatch) read() (procSample, serverCounters, error) {
	if w.metrics != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return w.metrics.read(ctx)
	}
	s, err := readProcs(w.pids)
	return s, serverCounters{}, err
}

// restart makes now the start of the measured window.
func (w *procWatch) restart() {
	if !w.ok {
		return
	}
	if s, c, err := w.read(); err == nil {
		w.start, w.counts = s, c
	}
}

// stats reads the end of the measured window; nil when unavailable.
func (w *procWatch) stats() *ProcStats {
	if !w.ok {
		return nil
	}
	end, c, err := w.read()
	if err != nil {
		return nil
	}
	st := &ProcStats{
		PID:        w.firstPID(),
		Source:     sourceProc,
		CPUPercent: cpuPercent(w.start, end),
		RSSBytes:   end.RSS,
		PeakRSS:    end.PeakRSS,
	}
	if len(w.pids) > 1 {
		st.PIDs = w.pids
	}
	if w.metrics != nil {
		st.Source, st.MetricsURL = sourceMetrics, w.metrics.url
		st.Counters = &ServerCounters{
			SendsAccepted: int64(c.Sent - w.counts.Sent),
			WSFramesOut:   int64(c.FramesOut - w.counts.FramesOut),
			FannedOut:     int64(c.FannedOut - w.counts.FannedOut),
		}
	}
	return st
}

// settle waits, up to timeout, until the process's RSS holds still (within
// 1% over half a second) and returns the last sample: memory the server
// freed (password hashing while accounts were made) returns to the system
// only gradually, and would spoil a baseline.
func (w *procWatch) settle(ctx context.Context, timeout time.Duration) (procSample, bool) {
	prev, ok := w.now()
	deadline := time.Now().Add(timeout)
	for ok && time.Now().Before(deadline) {
		if (realClock{}).SleepUntil(ctx, time.Now().Add(500*time.Millisecond)) != nil {
			return prev, false
		}
		s, sok := w.now()
		if !sok {
			return prev, false
		}
		steady := abs(s.RSS-prev.RSS) <= prev.RSS/100
		prev = s
		if steady {
			break
		}
	}
	return prev, ok
}

func abs(n int64) int64 { return max(n, -n) }

// now is a sample of the process, for progress lines and baselines:
// from /proc when the pid is known, because a scrape costs the server
// about 6 ms of CPU (seven JetStream info calls; measured at 200
// scrapes), which a progress line every second would add to the
// window's CPU; from the metrics otherwise. Both read the kernel's RSS.
func (w *procWatch) now() (procSample, bool) {
	if !w.ok {
		return procSample{}, false
	}
	if len(w.pids) > 0 {
		if s, err := readProcs(w.pids); err == nil {
			return s, true
		}
	}
	s, _, err := w.read()
	return s, err == nil
}

func (w *procWatch) firstPID() int {
	if len(w.pids) == 0 {
		return 0
	}
	return w.pids[0]
}
