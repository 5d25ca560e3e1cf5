package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
	"github.com/natter-chat/natter/store/sqlite"
)

func TestMain(m *testing.M) { os.Exit(testnode.Main(m)) }

// A second natter on the same --data exits at once, non-zero, naming the
// directory and the pid that holds it; the first keeps serving.
func TestSecondServeOnSameDataDirExits(t *testing.T) {
	first := testnode.Start(t, testnode.Options{})
	bin, err := testnode.Binary()
	if err != nil {
		t.Fatal(err)
	}
	addr, err := testnode.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, bin, "serve", "--http", addr, "--data", first.DataDir()).CombinedOutput()
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("the second natter kept running on a held data directory:\n%s", out)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("second natter: want a non-zero exit, got %v\n%s", err, out)
	}
	for _, want := range []string{first.DataDir(), fmt.Sprintf("pid %d", first.Pid())} {
		if !strings.Contains(string(out), want) {
			t.Errorf("message does not name %q:\n%s", want, out)
		}
	}
	t.Logf("second natter exited after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(string(out)))
	if err := first.WaitHealthy(ctx); err != nil {
		t.Fatalf("the first natter suffered: %v", err)
	}
	// Once the holder stops, the directory is free again.
	if err := first.Term(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.Restart(ctx); err != nil {
		t.Fatalf("restart on the released directory: %v", err)
	}
}

// withUmask runs the test with a umask, as a shell's default 022 would.
func withUmask(t *testing.T, mask int) {
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

// Under a umask of 022 and on a data directory left 0755 (with a file an
// older natter created 0644), natter makes the directory 0700 with a
// warning and everything in it, old and new, private.
func TestDataDirectoryAndFilesArePrivate(t *testing.T) {
	withUmask(t, 0o022)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "old.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	node := testnode.Start(t, testnode.Options{DataDir: dir, NATS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rest := node.Client()
	defer rest.Close()
	_, as, err := rest.NewUser(ctx, "alice", "password123", 1)
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := rest.NewUser(ctx, "bob", "password123", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rest.Send(ctx, as[0].Access, testnode.NewSend("m1", bob.ID, "hi")); err != nil {
		t.Fatal(err)
	}
	want := []string{"keys/token.key", "keys/nats-operator.password", "natter.lock", "jetstream"}
	if os.Getenv(testnode.PostgresEnv) == "" { // testnode then starts natter on SQLite
		want = append(want, "natter.db", "natter.db-wal", "natter.db-shm")
	}
	checkPrivate(t, dir, want)
	if !strings.Contains(node.Log(), "data directory was open to other users") {
		t.Errorf("no warning about the open directory in:\n%s", node.Log())
	}
}

// sqlite.Open keeps the database private by itself, for callers that do
// not set a umask.
func TestSQLiteFilesArePrivateUnderUmask022(t *testing.T) {
	withUmask(t, 0o022)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil { // the files are under test, not t.TempDir's mode
		t.Fatal(err)
	}
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "natter.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkPrivate(t, dir, []string{"natter.db", "natter.db-wal", "natter.db-shm"})
}

// checkPrivate fails unless every file under dir is 0600 at most and
// every directory 0700, and every path in want exists.
func checkPrivate(t *testing.T, dir string, want []string) {
	t.Helper()
	for _, p := range want {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("expected %s: %v", p, err)
		}
	}
	n := 0
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		// JetStream renames its temporary files while the walk runs.
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		n++
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s is %v: open to other users", path, perm)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d paths checked under %s", n, dir)
}
