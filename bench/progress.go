package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progressEvery is how often the progress line is rewritten.
const progressEvery = time.Second

// startProgress writes line(elapsed) to w every interval until stop is
// called or ctx ends, and once more at stop. On a terminal the line is
// rewritten in place; elsewhere each update is a line of its own. stop
// waits for the writer goroutine and is safe to call twice.
func startProgress(ctx context.Context, w io.Writer, every time.Duration, line func(elapsed time.Duration) string) (stop func()) {
	tty := isTerminal(w)
	start := time.Now()
	print := func() {
		if tty {
			fmt.Fprintf(w, "\r\x1b[K%s", line(time.Since(start)))
		} else {
			fmt.Fprintln(w, line(time.Since(start)))
		}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				print()
			case <-quit:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-done
			print()
			if tty {
				fmt.Fprintln(w)
			}
		})
	}
}

func isTerminal(w io.Writer) bool {
	if l, ok := w.(*lockedWriter); ok {
		w = l.w
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
