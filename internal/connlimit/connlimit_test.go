package connlimit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

const wait = 20 * time.Second

// serve runs h behind a Listener with cfg on a loopback port.
func serve(t *testing.T, cfg Config, h http.Handler) (*Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(ln, cfg)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l, ln.Addr().String()
}

// dialFrom opens a TCP connection from the loopback address from
// (127.0.0.x: Linux routes the whole 127/8 to lo).
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// get sends a GET on c and returns the status line of the answer.
func get(c net.Conn) (string, error) {
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return "", err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return fmt.Sprintf("%d %s", res.StatusCode, body), nil
}

func waitOpen(t *testing.T, l *Listener, want int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for l.Stats().Open != want {
		if time.Now().After(deadline) {
			t.Fatalf("open connections: %d, want %d", l.Stats().Open, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })

func TestPerAddressCap(t *testing.T) {
	l, addr := serve(t, Config{PerAddr: 2}, ok)
	a, b := dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.1", addr)
	for _, c := range []net.Conn{a, b} {
		if got, err := get(c); err != nil || got != "200 ok" {
			t.Fatalf("within the cap: %q %v", got, err)
		}
	}
	got, err := get(dialFrom(t, "127.0.0.1", addr))
	if err != nil || !strings.HasPrefix(got, "429 ") || !strings.Contains(got, `"rate_limited"`) {
		t.Fatalf("third connection from one address: %q %v, want 429 rate_limited", got, err)
	}
	// Go's HTTP client reads the refusal as an answer, not as a broken
	// connection.
	client := &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Get("http://" + addr + "/")
	if err != nil || res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("http.Client over the cap: %v %v, want 429 with Retry-After", res, err)
	}
	res.Body.Close()
	// Another address is not affected.
	if got, err := get(dialFrom(t, "127.0.0.2", addr)); err != nil || got != "200 ok" {
		t.Fatalf("other address: %q %v", got, err)
	}
	// A closed connection gives its slot back.
	a.Close()
	waitOpen(t, l, 2)
	if got, err := get(dialFrom(t, "127.0.0.1", addr)); err != nil || got != "200 ok" {
		t.Fatalf("after a close: %q %v", got, err)
	}
	if s := l.Stats(); s.RefusedPerAddr != 2 || s.RefusedFull != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTotalCapAndHijackedConnections(t *testing.T) {
	hijacked := make(chan net.Conn, 10)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hijack" {
			c, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			hijacked <- c
			return
		}
		io.WriteString(w, "ok")
	})
	l, addr := serve(t, Config{Max: 2}, h)
	ws := dialFrom(t, "127.0.0.3", addr)
	_ = ws.SetDeadline(time.Now().Add(wait))
	io.WriteString(ws, "GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")
	hc := <-hijacked
	if got, err := get(dialFrom(t, "127.0.0.4", addr)); err != nil || got != "200 ok" {
		t.Fatalf("second connection: %q %v", got, err)
	}
	got, err := get(dialFrom(t, "127.0.0.5", addr))
	if err != nil || !strings.HasPrefix(got, "503 ") || !strings.Contains(got, `"unavailable"`) {
		t.Fatalf("over the total cap: %q %v, want 503 unavailable", got, err)
	}
	// The hijacked connection still counts until it is closed, and
	// closing it twice releases one slot.
	hc.Close()
	hc.Close()
	waitOpen(t, l, 1)
	if got, err := get(dialFrom(t, "127.0.0.5", addr)); err != nil || got != "200 ok" {
		t.Fatalf("after the hijacked connection closed: %q %v", got, err)
	}
}

func TestBodyTimeoutCutsTricklingBodiesOnly(t *testing.T) {
	const d = 300 * time.Millisecond
	h := BodyTimeout(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ignore" {
			io.WriteString(w, "ignored")
			return
		}
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		// A handler may take longer than d once it has the body (a
		// long-poll takes up to 60 s): that is not cut.
		time.Sleep(2 * d)
		io.WriteString(w, "ok")
	}), d)
	_, addr := serve(t, Config{}, h)

	c := dialFrom(t, "127.0.0.1", addr)
	_ = c.SetDeadline(time.Now().Add(wait))
	start := time.Now()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	cut := make(chan struct{})
	go func() {
		defer close(cut)
		for range 100 {
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		res.Body.Close()
	}
	if err == nil && res.StatusCode == http.StatusOK {
		t.Fatal("a trickling body was read to the end")
	}
	if took := time.Since(start); took > 10*d {
		t.Fatalf("the trickling body was cut after %v, want about %v", took, d)
	}
	c.Close()
	<-cut

	// A whole body, then a handler slower than d: answered.
	c = dialFrom(t, "127.0.0.1", addr)
	_ = c.SetDeadline(time.Now().Add(wait))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	res, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("prompt body, slow handler: %v %v", res, err)
	}
	res.Body.Close()
	// A body the handler does not read is cut as well.
	c2 := dialFrom(t, "127.0.0.2", addr)
	_ = c2.SetDeadline(time.Now().Add(wait))
	start = time.Now()
	io.WriteString(c2, "POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx")
	if _, err := http.ReadResponse(bufio.NewReader(c2), nil); err != nil {
		t.Fatalf("unread body: %v", err)
	}
	if took := time.Since(start); took > 10*d {
		t.Fatalf("an unread trickling body held the answer for %v", took)
	}

	// And the connection is reused for a request without a body, whose
	// handler is not cut either.
	if got, err := get(c); err != nil || got != "200 ok" {
		t.Fatalf("keep-alive GET: %q %v", got, err)
	}
}

func TestClientBudgetKeepsTheReserve(t *testing.T) {
	budget, limit, reserve, err := ClientBudget()
	if err != nil {
		t.Fatal(err)
	}
	if reserve < MinReserve || reserve < limit/10 || (limit > 2*MinReserve && budget+reserve != limit) {
		t.Fatalf("budget %d, limit %d, reserve %d", budget, limit, reserve)
	}
}
