package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/natter-chat/natter/config"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/store/cassandra"
)

// withCassandra returns the store of a cassandra+ setting: conversations,
// messages and receipts in Cassandra, users, devices and blocks in users.
// It closes users when Cassandra cannot be opened.
func withCassandra(ctx context.Context, cfg config.Server, users store.UserSide, log *slog.Logger) (store.Store, error) {
	messages, err := cassandra.Open(ctx, cassandra.Options{
		Hosts: cfg.CassandraHosts, Keyspace: cfg.CassandraKeyspace, Consistency: cfg.CassandraConsistency, Logger: log,
	})
	if err != nil {
		users.Close()
		return nil, fmt.Errorf("open the Cassandra message store: %w", err)
	}
	log.Info("messages in Cassandra", "hosts", cfg.CassandraHosts, "keyspace", cfg.CassandraKeyspace,
		"consistency", cfg.CassandraConsistency)
	return store.Combine(users, messages), nil
}
