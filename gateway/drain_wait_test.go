package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// After its close frame the server waits for the client's answer: until
// the drain's cut for a drain's 1001, at most closeHandshakeWait for any
// other close, a 1001 that is not a drain's (a failed subscribe) included.
// The client here never answers.
func TestAwaitClientCloseWaitsForTheDrainOnly(t *testing.T) {
	for _, tc := range []struct {
		name     string
		draining bool
	}{{"drain", true}, {"not a drain", false}} {
		t.Run(tc.name, func(t *testing.T) {
			cut := make(chan struct{})
			returned := make(chan time.Duration, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, err := upgrader.Upgrade(w, r, nil)
				if err != nil {
					return
				}
				defer conn.Close()
				s := &session{conn: conn, cfg: sessionConfig{cut: cut}, readDone: make(chan struct{}), closeCode: closeGoingAway}
				if tc.draining {
					s.frames.close()
				}
				start := time.Now()
				s.awaitClientClose()
				returned <- time.Since(start)
			}))
			defer srv.Close()
			c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			wait := closeHandshakeWait + 5*time.Second // slack for a loaded machine
			select {
			case d := <-returned:
				if tc.draining {
					t.Fatalf("a drain's close stopped waiting after %v, before the cut", d)
				}
			case <-time.After(wait):
				if !tc.draining {
					t.Fatalf("a close outside a drain still waits after %v (want at most %v): it waits for a cut that never comes", wait, closeHandshakeWait)
				}
				close(cut)
				select {
				case <-returned:
				case <-time.After(5 * time.Second):
					t.Fatal("a drain's close still waits 5 s after the cut")
				}
			}
		})
	}
}
