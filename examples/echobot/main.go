// Command echobot is a natter bot over NATS: it logs in over REST, then
// talks to natter's NATS as a NATS-native client and answers every
// message it receives with the same text.
//
//	go run ./examples/echobot -http http://127.0.0.1:8080 -nats nats://127.0.0.1:4222 \
//	    -username echobot -password 'a long password'
//
// The node must run with --nats-listen. See docs/protocol.md, "NATS-native
// clients".
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/nats-io/nats.go"
)

type login struct {
	UserID      string `json:"user_id"`
	DeviceID    string `json:"device_id"`
	AccessToken string `json:"access_token"`
}

type event struct {
	Type            string `json:"type"`
	Cursor          string `json:"cursor"`
	MessageID       string `json:"message_id"`
	SenderID        string `json:"sender_id"`
	Content         string `json:"content"`
	ClientMessageID string `json:"client_message_id"`
	Code            int    `json:"code"`
}

func main() {
	httpURL := flag.String("http", "http://127.0.0.1:8080", "natter's HTTP address")
	natsURL := flag.String("nats", "nats://127.0.0.1:4222", "natter's NATS address (--nats-listen)")
	username := flag.String("username", "echobot", "the bot's natter account (registered if missing)")
	password := flag.String("password", "", "its password")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *httpURL, *natsURL, *username, *password); err != nil {
		slog.Error("echobot", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, httpURL, natsURL, username, password string) error {
	// Register (a 409 means the account exists), then log in: the access
	// token is the bot's NATS login.
	_, _ = post(httpURL+"/v1/auth/register", map[string]string{"username": username, "password": password}, nil)
	var l login
	if status, err := post(httpURL+"/v1/auth/login", map[string]string{"username": username, "password": password, "device_name": "echobot"}, &l); err != nil || status != 200 {
		return fmt.Errorf("login: status %d: %v", status, err)
	}
	// Replies may only arrive under the device's own inbox prefix.
	nc, err := nats.Connect(natsURL, nats.Token(l.AccessToken), nats.CustomInboxPrefix("_INBOX."+l.DeviceID))
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	api := func(op string) string { return "natter.api." + l.UserID + "." + l.DeviceID + "." + op }

	events := make(chan *nats.Msg, 256)
	inbox := "_INBOX." + l.DeviceID + ".events"
	sub, err := nc.ChanSubscribe(inbox, events)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	reply, err := nc.Request(api("connect"), []byte(`{"inbox":"`+inbox+`"}`), 10*time.Second)
	if err != nil {
		return fmt.Errorf("open a session: %w", err)
	}
	var session struct {
		Frames      string `json:"frames"`
		HeartbeatMS int64  `json:"heartbeat_ms"`
	}
	if err := json.Unmarshal(reply.Data, &session); err != nil || session.Frames == "" {
		return fmt.Errorf("open a session: %s", reply.Data)
	}
	slog.Info("echobot online", "user_id", l.UserID)
	ping := time.NewTicker(time.Duration(session.HeartbeatMS) * time.Millisecond / 2)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ping.C: // a session lives while it hears from the client
			_ = nc.Publish(session.Frames, []byte(`{"type":"ping"}`))
		case m := <-events:
			var e event
			if json.Unmarshal(m.Data, &e) != nil {
				continue
			}
			switch {
			case e.Type == "closed":
				return fmt.Errorf("session closed by natter (code %d)", e.Code)
			case e.Type == "message" && e.SenderID != l.UserID:
				_ = nc.Publish(session.Frames, mustJSON(map[string]string{"type": "receipt", "message_id": e.MessageID, "status": "read"}))
				ack, err := nc.Request(api("send"), mustJSON(map[string]any{
					"client_message_id": "echo-" + e.MessageID, // a retry of the echo stays one message
					"recipient_id":      e.SenderID, "message_type": "user", "content": e.Content,
					"timestamp": time.Now().UnixMilli()}), 10*time.Second)
				if err != nil {
					slog.Warn("echo", "err", err)
					continue
				}
				slog.Info("echoed", "to", e.SenderID, "ack", string(ack.Data))
			}
		}
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func post(url string, body, out any) (int, error) {
	r, err := http.Post(url, "application/json", bytes.NewReader(mustJSON(body)))
	if err != nil {
		return 0, err
	}
	defer r.Body.Close()
	if out != nil && r.StatusCode < 300 {
		return r.StatusCode, json.NewDecoder(r.Body).Decode(out)
	}
	return r.StatusCode, nil
}
