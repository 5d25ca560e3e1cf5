package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/operator"
	"github.com/natter-chat/natter/store"
)

// serveOperator runs the operator API (natter users, natter groups) on
// natter's own NATS connection until the returned stop is called (safe
// to call twice). Only natter and the operator credentials may publish
// its subjects.
func serveOperator(db store.Store, core *chat.Core, nc *nats.Conn, log *slog.Logger) (stop func()) {
	ost, ok := db.(operator.Store)
	if !ok {
		log.Warn("no operator API: the store cannot list users", "store", fmt.Sprintf("%T", db))
		return func() {}
	}
	svc := operator.New(operator.Config{
		Store: ost,
		// A user's presence as they see it themselves: unfiltered by
		// their privacy settings and blocks.
		Presence: func(ctx context.Context, userID string) (bool, int64) {
			p := core.Presence.Of(ctx, userID, userID)
			return p.Status == "online", p.LastSeen
		},
		Revoke: core.Accounts.RevokeDevice,
		Logger: log.With("component", "operator"),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := svc.Serve(ctx, nc); err != nil {
			log.Error("operator api", "err", err)
		}
	}()
	return func() { cancel(); <-done }
}
