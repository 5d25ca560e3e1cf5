package main

import (
	"slices"
	"testing"
)

func TestServeCassandraSettings(t *testing.T) {
	t.Setenv("NATTER_CASSANDRA_HOSTS", "10.0.0.1:9042, 10.0.0.2")
	cfg, err := parseServeFlags([]string{"--store", "cassandra+sqlite", "--cassandra-consistency", "QUORUM"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store != "cassandra+sqlite" || !slices.Equal(cfg.CassandraHosts, []string{"10.0.0.1:9042", "10.0.0.2"}) ||
		cfg.CassandraKeyspace != "natter" || cfg.CassandraConsistency != "QUORUM" {
		t.Fatalf("settings = store %q hosts %q keyspace %q consistency %q", cfg.Store, cfg.CassandraHosts,
			cfg.CassandraKeyspace, cfg.CassandraConsistency)
	}
	if _, err := parseServeFlags([]string{"--store", "cassandra+postgres"}); err == nil {
		t.Fatal("cassandra+postgres without --postgres-url accepted")
	}
	t.Setenv("NATTER_CASSANDRA_HOSTS", "")
	if _, err := parseServeFlags([]string{"--store", "cassandra+sqlite"}); err == nil {
		t.Fatal("cassandra+sqlite without hosts accepted")
	}
}
