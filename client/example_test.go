package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/natter-chat/natter/client"
)

// An echo bot: log in, then answer every message with its own text,
// resuming after a reconnect from the last cursor it handled.
func Example() {
	ctx := context.Background()
	c := client.New("http://127.0.0.1:8080", client.Options{})
	if _, err := c.Login(ctx, "echo-bot", "its password", "echo bot"); err != nil {
		log.Fatal(err)
	}
	me := c.Session().UserID
	cursor := ""
	for {
		conn, err := c.Dial(ctx, cursor)
		if err != nil {
			log.Fatal(err)
		}
		for {
			ev, err := conn.Read()
			if err != nil {
				log.Printf("connection lost (close code %d): %v", client.CloseCode(err), err)
				break
			}
			if ev.Type == "message" && ev.SenderID != me {
				// The event's id makes the answer's client_message_id:
				// a replayed event gets the same answer, stored once.
				if _, err := c.Send(ctx, client.SendRequest{ClientMessageID: "echo-" + ev.MessageID,
					RecipientID: ev.SenderID, Content: ev.Content}); err != nil {
					fmt.Println("send:", err)
				}
			}
			if ev.Durable() {
				cursor = ev.Cursor
			}
		}
		conn.Close()
	}
}
