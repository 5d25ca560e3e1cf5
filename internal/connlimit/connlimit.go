// Package connlimit guards the gateway's listener: a cap on concurrent
// connections per client address, a cap on all client connections that
// keeps a reserve of file descriptors for JetStream, the store and NATS,
// and a deadline on reading request bodies.
//
// Why the reserve: when the process runs out of descriptors, JetStream's
// file store records a critical write error and refuses every write until
// a restart. Clients are the only thing an outsider can multiply, so they
// are the ones refused, at accept, before anything else can hit EMFILE.
package connlimit

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// MinReserve is the smallest descriptor reserve: JetStream keeps a few
// files per stream and KV bucket open, SQLite three per connection, and
// both open more while they compact; 256 is several times what a node
// holds at rest (about 60 measured).
const MinReserve = 256

// Config sets the caps; a zero field means no cap.
type Config struct {
	// PerAddr caps concurrent connections from one client IP address. An
	// address over it gets 429 rate_limited and the connection is closed.
	PerAddr int
	// Max caps all client connections (see ClientBudget). A connection
	// over it gets 503 unavailable and is closed.
	Max int
	// Logger receives one warning per refusal burst; nil discards.
	Logger *slog.Logger
}

// ClientBudget is how many client connections a process may hold under
// its RLIMIT_NOFILE (soft limit, which Go raises to the hard one at
// start): the limit minus a reserve of max(MinReserve, 10 % of it). It
// also returns the limit and the reserve, for the log.
func ClientBudget() (budget, limit, reserve int, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	limit = int(min(rl.Cur, 1<<30))
	reserve = max(MinReserve, limit/10)
	// With a tiny limit clients still get a few, rather than none: the
	// operator sees the warning in the log.
	return max(limit-reserve, 16), limit, reserve, nil
}

// Listener is a net.Listener that refuses connections over its caps.
type Listener struct {
	net.Listener
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	closed bool
	total  int
	byAddr map[string]int

	refusals chan struct{}  // a slot per refusal in progress
	wg       sync.WaitGroup // the refusals in progress

	refusedAddr, refusedFull atomic.Int64
	lastWarn                 atomic.Int64 // unix nanos of the last warning
}

// New wraps ln.
func New(ln net.Listener, cfg Config) *Listener {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, cfg: cfg, log: log, byAddr: map[string]int{}, refusals: make(chan struct{}, refusing)}
}

// Refusal answers, written raw because no request has been read: enough
// for an HTTP client to tell a limit from a network fault.
var (
	answerPerAddr = rawAnswer("429 Too Many Requests", "rate_limited", "too many connections from your address; retry later")
	answerFull    = rawAnswer("503 Service Unavailable", "unavailable", "the server has no room for another connection; retry later")
)

func rawAnswer(status, code, message string) string {
	body := fmt.Sprintf(`{"error":{"code":%q,"message":%q}}`, code, message)
	return fmt.Sprintf("HTTP/1.1 %s\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", status, len(body), body)
}

// Accept returns the next connection within the caps; the others are
// answered and closed here.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := hostOf(c.RemoteAddr())
		switch l.admit(addr) {
		case admitted:
			return &conn{Conn: c, l: l, addr: addr}, nil
		case overAddr:
			l.refusedAddr.Add(1)
			l.refuse(c, answerPerAddr, "per-address connection cap reached", addr)
		case full:
			l.refusedFull.Add(1)
			l.refuse(c, answerFull, "client connection cap reached (descriptor reserve)", addr)
		}
	}
}

type verdict int

const (
	admitted verdict = iota
	overAddr
	full
)

func (l *Listener) admit(addr string) verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.Max > 0 && l.total >= l.cfg.Max {
		return full
	}
	if l.cfg.PerAddr > 0 && l.byAddr[addr] >= l.cfg.PerAddr {
		return overAddr
	}
	l.total++
	l.byAddr[addr]++
	return admitted
}

func (l *Listener) release(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
}

// refusing bounds the connections being refused at once: each holds a
// descriptor for up to refuseTime, taken from the reserve; beyond it they
// are closed without an answer.
const (
	refusing   = 16
	refuseTime = 500 * time.Millisecond
)

// refuse answers c and closes it, off the accept loop. The answer waits
// for the request's headers (up to refuseTime), because an HTTP client
// takes an answer that comes before its request for a broken connection.
func (l *Listener) refuse(c net.Conn, answer, why, addr string) {
	now := time.Now().UnixNano()
	if last := l.lastWarn.Load(); now-last > int64(10*time.Second) && l.lastWarn.CompareAndSwap(last, now) {
		l.log.Warn("refusing connections: "+why, "addr", addr, "per_addr_cap", l.cfg.PerAddr, "total_cap", l.cfg.Max,
			"refused_per_addr", l.refusedAddr.Load(), "refused_full", l.refusedFull.Load())
	}
	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.wg.Add(1) // under mu, so that Close's Wait never races an Add
	}
	l.mu.Unlock()
	if closed {
		_ = c.Close()
		return
	}
	select {
	case l.refusals <- struct{}{}:
	default:
		l.wg.Done()
		_ = c.Close()
		return
	}
	go func() {
		defer l.wg.Done()
		defer func() { <-l.refusals }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(refuseTime))
		readHeaders(c)
		_, _ = io.WriteString(c, answer)
		// Half-close and drain, so that the kernel does not reset the
		// connection (dropping the answer) over unread request bytes.
		if tc, ok := c.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
			_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
		}
	}()
}

// readHeaders reads until the end of a request's headers, 8 KiB, or the
// connection's deadline.
func readHeaders(c net.Conn) {
	buf := make([]byte, 8<<10)
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if strings.Contains(string(buf[:n]), "\r\n\r\n") || err != nil {
			return
		}
	}
}

// Close closes the listener and waits for the refusals in progress; safe
// to call twice.
func (l *Listener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	err := l.Listener.Close()
	l.wg.Wait()
	return err
}

// Stats are the listener's counters.
type Stats struct {
	Open                        int
	RefusedPerAddr, RefusedFull int64
}

// Stats returns the current counters.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	open := l.total
	l.mu.Unlock()
	return Stats{Open: open, RefusedPerAddr: l.refusedAddr.Load(), RefusedFull: l.refusedFull.Load()}
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// conn gives its slot back once, when closed (by net/http, or by the
// WebSocket code after a hijack: gorilla hands on this same value).
type conn struct {
	net.Conn
	l    *Listener
	addr string
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.addr) })
	return err
}

// BodyTimeout bounds the reading of each request body to d, so that a
// body that trickles in is cut rather than held forever. It does not use
// http.Server's ReadTimeout, which stays armed while the handler runs and
// would end 60 s long-polls; here the deadline is lifted as soon as the
// body has been read. Requests without a body (WebSocket upgrades,
// long-polls) are untouched.
func BodyTimeout(h http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
			h.ServeHTTP(w, r)
			return
		}
		// The deadline stays armed unless the body is read to its end:
		// net/http reads what a handler left unread before answering, and
		// must not wait for a trickle then either.
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline once the body has been read.
type deadlineBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	lifted bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.lifted {
		b.lifted = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
