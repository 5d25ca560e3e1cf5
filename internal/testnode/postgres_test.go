package testnode

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPostgresDatabasePerNode needs $NATTER_TEST_POSTGRES_URL. natter is
// run through a wrapper that records its arguments and drops the store
// flags (the adapter is not this package's to test): the node must be
// started on a database of its own, keep it across a restart, and drop
// it on Close.
func TestPostgresDatabasePerNode(t *testing.T) {
	admin := os.Getenv(PostgresEnv)
	if admin == "" {
		t.Skip(PostgresEnv + " is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	wrapper := filepath.Join(dir, "natter")
	script := `#!/bin/sh
echo "$@" >> ` + argsFile + `
keep=""
while [ $# -gt 0 ]; do
	case "$1" in
	--store|--postgres-url) shift 2 ;;
	*) keep="$keep $1"; shift ;;
	esac
done
exec ` + bin + ` $keep
`
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	n, err := Launch(ctx, Options{Binary: wrapper, PostgresURL: admin})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Kill9(); err != nil {
		t.Fatal(err)
	}
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	starts := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(starts) != 2 || starts[0] != starts[1] {
		t.Fatalf("arguments of the two starts: %q, want the same twice", starts)
	}
	args := strings.Fields(starts[0])
	i := slices.Index(args, "--postgres-url")
	if i < 0 || i+1 >= len(args) || !slices.Contains(args, "--store") || args[slices.Index(args, "--store")+1] != "postgres" {
		t.Fatalf("natter started with %q, want --store postgres --postgres-url URL", args)
	}
	dbURL := args[i+1]
	if !strings.Contains(dbURL, "/natter_t_") {
		t.Errorf("database URL %s does not name a natter_t_ database", dbURL)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to the node's database: %v", err)
	}
	var name string
	err = conn.QueryRow(ctx, "SELECT current_database()").Scan(&name)
	conn.Close(ctx)
	if err != nil || "/"+name != dbURL[strings.LastIndex(dbURL, "/"):strings.IndexByte(dbURL+"?", '?')] {
		t.Errorf("connected to %q (%v) through %s", name, err, dbURL)
	}

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	conn, err = pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&left); err != nil || left != 0 {
		t.Errorf("database %s after Close: %d left (%v), want dropped", name, left, err)
	}
}
