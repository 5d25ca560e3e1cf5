package natsnode

import (
	"context"
	"errors"
	"io/fs"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// largestFile is the size of the largest file under dir.
func largestFile(t *testing.T, dir string) int64 {
	var largest int64
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		fi, err := e.Info()
		if err == nil {
			largest = max(largest, fi.Size())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return largest
}

// A write error (here EFBIG: every file capped, as a full disk fails with
// ENOSPC) closes the stream; Healthy names it, and once files can grow
// again Recover reopens it without a restart, keeping what was stored.
func TestRecoverReopensAStreamClosedByAWriteError(t *testing.T) {
	signal.Ignore(syscall.SIGXFSZ) // a write past the cap fails with EFBIG instead
	dir := t.TempDir()
	node, err := Start(Options{StoreDir: dir, SyncInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Shutdown()
	nc, err := node.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CONV", Subjects: []string{"conv.>"}}); err != nil {
		t.Fatal(err)
	}
	payload := []byte(strings.Repeat("x", 16<<10))
	for range 10 {
		if _, err := js.Publish(ctx, "conv.a", payload); err != nil {
			t.Fatal(err)
		}
	}

	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	capped := old
	capped.Cur = uint64(largestFile(t, dir) + 64<<10)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &capped); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()
	refused := 0
	for i := 0; i < 200 && refused < 3; i++ {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.Publish(pctx, "conv.a", payload)
		pcancel()
		if err != nil {
			refused++
		}
	}
	if refused < 3 {
		t.Fatal("the capped store kept accepting writes")
	}
	deadline := time.Now().Add(20 * time.Second)
	for !errors.Is(node.Healthy(), ErrWriteFailed) {
		if time.Now().After(deadline) {
			t.Fatalf("Healthy does not report the write error: %v", node.Healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
	err = node.Healthy()
	if !strings.Contains(err.Error(), "CONV") {
		t.Fatalf("Healthy does not name the stream: %v", err)
	}
	t.Logf("while capped: %v", err)
	s, err := js.Stream(ctx, "CONV")
	if err != nil {
		t.Fatalf("stream info while capped: %v", err)
	}
	before := s.CachedInfo().State.Msgs

	restore()
	if err := node.Recover(); err != nil {
		t.Fatalf("recover: %v", err)
	}
	if _, err := js.Publish(ctx, "conv.a", payload); err != nil {
		t.Fatalf("publish after recover: %v", err)
	}
	s, err = js.Stream(ctx, "CONV")
	if err != nil {
		t.Fatalf("stream info after recover: %v", err)
	}
	if got := s.CachedInfo().State.Msgs; got != before+1 || before < 10 {
		t.Fatalf("after recover: %d messages, want %d (and at least the 10 first)", got, before+1)
	}
}
