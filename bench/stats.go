package bench

import (
	"log/slog"
	"maps"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds with 3 significant digits (an
// error of at most 0.1%) up to an hour; a longer one is recorded as an hour,
// while Max still reports it exactly.
const (
	histLowest  = 1
	histHighest = int64(time.Hour / time.Microsecond)
	histDigits  = 3
)

// Recorder collects latencies into an HDR histogram for the whole run and
// a second one for the current progress window. Safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	total  *hdrhistogram.Histogram
	window *hdrhistogram.Histogram
	max    time.Duration
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{
		total:  hdrhistogram.New(histLowest, histHighest, histDigits),
		window: hdrhistogram.New(histLowest, histHighest, histDigits),
	}
}

// Record adds one latency; a negative one counts as zero.
func (r *Recorder) Record(d time.Duration) {
	d = max(d, 0)
	us := min(d.Microseconds(), histHighest)
	r.mu.Lock()
	defer r.mu.Unlock()
	// RecordValue fails only for values out of range, which us never is.
	_ = r.total.RecordValue(us)
	_ = r.window.RecordValue(us)
	r.max = max(r.max, d)
}

// Summary describes everything recorded so far.
func (r *Recorder) Summary() Latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := summarize(r.total)
	l.Max = ms(r.max)
	return l
}

// TakeWindow describes what was recorded since the previous call (or the
// start) and starts a new window.
func (r *Recorder) TakeWindow() Latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := summarize(r.window)
	r.window.Reset()
	return l
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	usToMS := func(us int64) float64 { return float64(us) / 1e3 }
	return Latency{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1e3,
		P50:   usToMS(h.ValueAtQuantile(50)),
		P90:   usToMS(h.ValueAtQuantile(90)),
		P99:   usToMS(h.ValueAtQuantile(99)),
		P999:  usToMS(h.ValueAtQuantile(99.9)),
		Max:   usToMS(h.Max()),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ErrorCounts counts errors by code: the server's codes (rate_limited,
// forbidden...) and the bench's own (dial, close_4029...). Safe for
// concurrent use; the zero value is ready.
type ErrorCounts struct {
	// Log, when set, gets the first error of each code with its detail.
	Log *slog.Logger

	mu sync.Mutex
	m  map[string]int64
}

// Add counts one error of code.
func (e *ErrorCounts) Add(code string) { e.Note(code, "") }

// Note counts one error of code; the first of each code is logged with
// detail (the server's message, the Go error).
func (e *ErrorCounts) Note(code, detail string) {
	e.mu.Lock()
	if e.m == nil {
		e.m = make(map[string]int64)
	}
	e.m[code]++
	first := e.m[code] == 1
	e.mu.Unlock()
	if first && e.Log != nil {
		e.Log.Warn("first error of its kind", "code", code, "detail", detail)
	}
}

// Snapshot returns a copy of the counts, nil when there are none.
func (e *ErrorCounts) Snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.m) == 0 {
		return nil
	}
	return maps.Clone(e.m)
}

// Total is the number of errors of every code.
func (e *ErrorCounts) Total() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var n int64
	for _, c := range e.m {
		n += c
	}
	return n
}
