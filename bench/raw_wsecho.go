package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// echoWindow is how many messages each raw-ws-echo client keeps in flight.
const echoWindow = 16

// runRawWSEcho is the raw-ws-echo scenario: a bare gorilla/websocket echo
// server in this process and --conns clients, each keeping echoWindow
// messages of --size bytes in flight: the round trips per second and
// their latency are the ceiling of any WebSocket server on this machine.
func runRawWSEcho(ctx context.Context, e *env) (*Report, error) {
	cfg := e.cfg
	r := e.newReport("raw-ws-echo", map[string]any{
		"conns": cfg.Conns, "size": cfg.Size, "window": echoWindow, "warmup": cfg.Warmup.String(),
	})
	srv, err := startEchoServer()
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	d := newDialer(ctx, []*url.URL{srv.url}, cfg.SourceIPs, e.errs)
	clients := make([]*echoClient, cfg.Conns)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.ws.Close()
			}
		}
	}()
	err = forEach(ctx, cfg.Conns, cfg.Concurrency, func(ctx context.Context, i int) error {
		ws, _, err := d.nextDialer().DialContext(ctx, srv.url.String(), nil)
		if err != nil {
			e.errs.Note("dial", err.Error())
			return fmt.Errorf("connect to echo server: %w", err)
		}
		clients[i] = &echoClient{ws: ws, slots: make(chan struct{}, echoWindow)}
		return nil
	})
	if err != nil {
		return nil, err
	}

	base := time.Now()
	measureFrom := base.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	measureOff := int64(cfg.Warmup)
	rtt := NewRecorder()
	var sent, echoed atomic.Int64 // measured ones
	self := e.watchSelf()
	stop := e.progress(ctx, func(elapsed time.Duration) string {
		return fmt.Sprintf("raw-ws-echo %3.0fs  sent %d  echoed %d  p99 %s",
			elapsed.Seconds(), sent.Load(), echoed.Load(), windowP99(rtt))
	})
	defer stop()

	loadCtx, cancelLoad := context.WithDeadline(ctx, end)
	defer cancelLoad()
	var writers, readers sync.WaitGroup
	for _, c := range clients {
		readers.Go(func() { c.read(base, measureOff, rtt, &echoed) })
		writers.Go(func() {
			if err := c.write(loadCtx, base, measureOff, e.cfg.Size, &sent); err != nil && loadCtx.Err() == nil {
				e.errs.Note("write", err.Error())
			}
		})
	}
	if (realClock{}).SleepUntil(ctx, measureFrom) == nil {
		self.restart()
	}
	writers.Wait()
	loadEnd := time.Now()
	r.Bench = self.stats()
	drained := func() bool {
		for _, c := range clients {
			if len(c.slots) > 0 {
				return false
			}
		}
		return true
	}
	err = waitFor(ctx, cfg.Drain, drained)
	settled := drained() // no echo outstanding when the drain ended
	for _, c := range clients {
		c.ws.Close() // ends its reader
	}
	readers.Wait()
	if err != nil {
		return nil, err
	}
	window := loadEnd.Sub(measureFrom)
	r.Seconds = window.Seconds()
	r.Messages = &Messages{
		Offered:       sent.Load(),
		Acked:         echoed.Load(),
		OfferedPerSec: perSec(sent.Load(), window),
		AckedPerSec:   perSec(echoed.Load(), window),
		Unacked:       sent.Load() - echoed.Load(),
		Settled:       settled,
	}
	r.Latency.RoundTrip = new(rtt.Summary())
	r.Errors = e.errs.Snapshot()
	return r, nil
}

// echoClient is one raw-ws-echo client: a writer and a reader goroutine,
// and a slot per message in flight.
type echoClient struct {
	ws    *websocket.Conn
	slots chan struct{}
}

// write sends messages stamped with their send time (ns since base) while
// a slot is free, until ctx ends.
func (c *echoClient) write(ctx context.Context, base time.Time, measureOff int64, size int, sent *atomic.Int64) error {
	for {
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		data := make([]byte, size)
		t := int64(time.Since(base))
		binary.BigEndian.PutUint64(data, uint64(t))
		if err := c.ws.WriteMessage(websocket.BinaryMessage, data); err != nil {
			return err
		}
		if t >= measureOff {
			sent.Add(1)
		}
	}
}

// read records the round trip of every echo until the connection closes.
func (c *echoClient) read(base time.Time, measureOff int64, rtt *Recorder, echoed *atomic.Int64) {
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		if len(data) >= 8 {
			if t := int64(binary.BigEndian.Uint64(data)); t >= measureOff {
				echoed.Add(1)
				rtt.Record(time.Since(base) - time.Duration(t))
			}
		}
		select {
		case <-c.slots:
		default:
		}
	}
}

// echoServer is a bare WebSocket echo server on a loopback port.
type echoServer struct {
	url    *url.URL
	hs     *http.Server
	served chan struct{} // closed when Serve returned

	mu    sync.Mutex
	conns map[*websocket.Conn]struct{}
	wg    sync.WaitGroup // connection handlers
}

func startEchoServer() (*echoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for echo server: %w", err)
	}
	s := &echoServer{
		url:    &url.URL{Scheme: "ws", Host: ln.Addr().String(), Path: "/"},
		served: make(chan struct{}),
		conns:  make(map[*websocket.Conn]struct{}),
	}
	up := websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}
	s.hs = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		if !s.track(ws) {
			ws.Close()
			return
		}
		defer s.untrack(ws)
		for {
			mt, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if err := ws.WriteMessage(mt, data); err != nil {
				return
			}
		}
	})}
	go func() { // owned by s: Close waits for it
		defer close(s.served)
		_ = s.hs.Serve(ln) // returns ErrServerClosed after Close
	}()
	return s, nil
}

// track registers a connection unless the server is closing.
func (s *echoServer) track(ws *websocket.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		return false
	}
	s.conns[ws] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *echoServer) untrack(ws *websocket.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, ws)
	ws.Close()
	s.wg.Done()
}

// Close stops the server and closes its connections, which http.Server
// does not do for hijacked ones, then waits for their handlers.
func (s *echoServer) Close() {
	_ = s.hs.Close()
	<-s.served
	s.mu.Lock()
	for ws := range s.conns {
		ws.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}
