package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// A batch reaches the socket as one write and the client still reads
// every frame, whole and in order; outside a batch each frame is its own
// write, as before.
func TestBatchConnWritesHeldFramesAtOnce(t *testing.T) {
	var writes atomic.Int64
	type result struct {
		heldWrites, plainWrites int64
		err                     error
	}
	res := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bw := &batchingWriter{ResponseWriter: w}
		conn, err := upgrader.Upgrade(bw, r, nil)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer conn.Close()
		bc := bw.conn
		bc.Conn = countingConn{Conn: bc.Conn, writes: &writes}

		bc.Hold()
		for i := range 20 {
			if err := conn.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
				res <- result{err: err}
				return
			}
		}
		if writes.Load() != 0 {
			res <- result{err: fmt.Errorf("%d writes reached the socket during the batch", writes.Load())}
			return
		}
		err = bc.Flush()
		held := writes.Load()
		for i := 20; i < 25; i++ {
			if err == nil {
				err = conn.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"n":%d}`, i))
			}
		}
		res <- result{heldWrites: held, plainWrites: writes.Load() - held, err: err}
		// Stay open until the client has read everything.
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, _, _ = conn.ReadMessage()
	}))
	defer srv.Close()

	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i := range 25 {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if want := fmt.Sprintf(`{"n":%d}`, i); string(data) != want {
			t.Fatalf("frame %d is %s, want %s", i, data, want)
		}
	}
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.heldWrites != 1 || r.plainWrites != 5 {
		t.Fatalf("socket writes: %d for the 20 held frames (want 1), %d for 5 plain ones (want 5)", r.heldWrites, r.plainWrites)
	}
}

// A batch larger than batchLimit goes out in pieces while it is built,
// and nothing is lost or reordered.
func TestBatchConnFlushesAtTheLimit(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var writes atomic.Int64
	bc := &batchConn{Conn: countingConn{Conn: a, writes: &writes}}
	chunk := []byte(strings.Repeat("x", 1000))
	total := 3*batchLimit + 500
	got := make(chan int, 1)
	go func() {
		n := 0
		buf := make([]byte, 64<<10)
		for n < total {
			k, err := b.Read(buf)
			if err != nil {
				break
			}
			n += k
		}
		got <- n
	}()
	bc.Hold()
	for sent := 0; sent < total; sent += len(chunk) {
		p := chunk[:min(len(chunk), total-sent)]
		if _, err := bc.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := bc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-got:
		if n != total {
			t.Fatalf("read %d bytes, want %d", n, total)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("reader did not get everything")
	}
	if w := writes.Load(); w < 3 || w > 5 {
		t.Fatalf("%d socket writes for %d bytes with a %d-byte limit", w, total, batchLimit)
	}
	if bc.buf != nil {
		t.Fatal("a flushed batch still holds a buffer")
	}
}

// BenchmarkFrameWrites writes bursts of message-sized frames to a real
// loopback WebSocket whose client reads them, each burst either frame by
// frame (what gorilla/websocket does alone) or held and flushed once (what
// a session's writer does with what it finds ready). Burst 3 is one 1:1
// message on a busy socket: the ack and the sender's own message event,
// or events of several conversations. Compare the two with the process's
// CPU time, e.g. -benchtime 50000x under /usr/bin/time.
func BenchmarkFrameWrites(b *testing.B) {
	frame := []byte(`{"type":"message","cursor":"123456","message_id":"c0ffee-42","conversation_id":"c0ffee","seq":42,` +
		`"sender_id":"01JD0000000000000000000000","recipient_id":"01JD0000000000000000000001","message_type":"user",` +
		`"content":"` + strings.Repeat("x", 100) + `","client_message_id":"8d3f2a44-0000-4000-8000-000000000000","server_ts":1764633600000}`)
	for _, burst := range []int{1, 3, 8} {
		for _, held := range []bool{false, true} {
			name := fmt.Sprintf("burst=%d/held=%v", burst, held)
			b.Run(name, func(b *testing.B) {
				conns := make(chan *websocket.Conn, 1)
				var bc *batchConn
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					bw := &batchingWriter{ResponseWriter: w}
					c, err := upgrader.Upgrade(bw, r, nil)
					if err != nil {
						b.Error(err)
						return
					}
					bc = bw.conn
					conns <- c
				}))
				defer srv.Close()
				client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
				if err != nil {
					b.Fatal(err)
				}
				defer client.Close()
				server := <-conns
				defer server.Close()
				total := b.N * burst
				read := make(chan error, 1)
				go func() {
					for range total {
						if _, _, err := client.ReadMessage(); err != nil {
							read <- err
							return
						}
					}
					read <- nil
				}()
				b.ResetTimer()
				for range b.N {
					if held {
						bc.Hold()
					}
					for range burst {
						if err := server.WriteMessage(websocket.TextMessage, frame); err != nil {
							b.Fatal(err)
						}
					}
					if held {
						if err := bc.Flush(); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := <-read; err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
