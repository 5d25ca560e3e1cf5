package gateway

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/natter-chat/natter/schema"
)

// Failed logins back off per account and address: the guessing address
// waits (429 with Retry-After, even with the right password), another
// address logs the owner in at once, and the guessing address may try
// again once its wait is over.
func TestLoginBacksOffPerAccountAndAddress(t *testing.T) {
	n, _ := startNode(t, nodeOptions{gateway: Config{RateLimit: true, AuthBurst: 1000, AuthRate: 1000}})
	n.user("alice")
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 20 * time.Second}
	}
	login := func(c *http.Client, password string) (int, http.Header, string) {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"username": "alice", "password": password})
		resp, err := c.Post(n.url+"/v1/auth/login", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, resp.Header, e.Error.Code
	}
	guesser, owner := from("127.0.0.2"), from("127.0.0.3")
	// 5 free guesses, then waits of 1 s, 2 s, 4 s ... from each attempt:
	// on a loaded machine a password check may outlast the first waits.
	checked := 0
	for {
		st, h, _ := login(guesser, "wrong-password")
		if st == 429 {
			if h.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			break
		}
		if st != 401 {
			t.Fatalf("guess %d: %d, want 401", checked+1, st)
		}
		if checked++; checked > 12 {
			t.Fatalf("%d guesses checked from one address without a wait", checked)
		}
	}
	if checked < 6 {
		t.Fatalf("only %d guesses were checked before the first wait, want 5 free and the 6th", checked)
	}
	st, h, code := login(guesser, "password123")
	if st != 429 || code != schema.CodeRateLimited || h.Get("Retry-After") == "" {
		t.Fatalf("right password from the guessing address during its wait: %d %s %v, want 429 rate_limited with Retry-After", st, code, h)
	}
	if st, _, _ := login(owner, "password123"); st != 200 {
		t.Fatalf("the owner from another address: %d, want 200 at once", st)
	}
	wait, _ := strconv.Atoi(h.Get("Retry-After"))
	deadline := time.Now().Add(time.Duration(wait)*time.Second + 20*time.Second)
	for {
		st, _, _ := login(guesser, "password123")
		if st == 200 {
			break
		}
		if st != 429 || time.Now().After(deadline) {
			t.Fatalf("the guessing address %d s after its wait of %d s: %d", int(time.Since(deadline).Seconds())+20, wait, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
