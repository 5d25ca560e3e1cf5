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

// cpuPercent is the CPU the process used between two samples, in percent
// of one core.
func cpuPercent(a, b procSample) float64 {
	wall := b.At.Sub(a.At)
	if wall <= 0 {
		return 0
	}
	return 100 * float64(b.CPU-a.CPU) / float64(wall)
}

// procWatch samples a process (when its pid is known) at the start and the
// end of the measured window. A failed read is logged once and leaves the
// statistics out of the report.
type procWatch struct {
	pid   int
	start procSample
	ok    bool
}

// newProcWatch starts watching process pid; 0 watches nothing.
func newProcWatch(log *slog.Logger, pid int) *procWatch {
	w := &procWatch{pid: pid}
	if pid == 0 {
		return w
	}
	s, err := readProc(pid)
	if err != nil {
		log.Warn("no process statistics", "pid", pid, "err", err)
		return w
	}
	w.start, w.ok = s, true
	return w
}

// watchServer watches natter's process when its pid is known.
func (e *env) watchServer() *procWatch {
	if e.serverPID() == 0 {
		e.log.Warn("no server statistics: pass --pid, or --spawn")
	}
	return newProcWatch(e.log, e.serverPID())
}

// restart makes now the start of the measured window.
func (w *procWatch) restart() {
	if !w.ok {
		return
	}
	if s, err := readProc(w.pid); err == nil {
		w.start = s
	}
}

// stats reads the end of the measured window; nil when unavailable.
func (w *procWatch) stats() *ProcStats {
	if !w.ok {
		return nil
	}
	end, err := readProc(w.pid)
	if err != nil {
		return nil
	}
	return &ProcStats{
		PID:        w.pid,
		CPUPercent: cpuPercent(w.start, end),
		RSSBytes:   end.RSS,
		PeakRSS:    end.PeakRSS,
	}
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

// now is a sample of the process, for progress lines.
func (w *procWatch) now() (procSample, bool) {
	if !w.ok {
		return procSample{}, false
	}
	s, err := readProc(w.pid)
	return s, err == nil
}
