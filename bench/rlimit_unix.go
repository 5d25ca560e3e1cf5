//go:build unix

package bench

import (
	"log/slog"
	"syscall"
)

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit, so that
// tens of thousands of connections can be open (a spawned natter inherits
// it), and warns when even that is too low for the run.
func raiseFileLimit(log *slog.Logger, cfg Config) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		log.Warn("read RLIMIT_NOFILE", "err", err)
		return
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			log.Warn("raise RLIMIT_NOFILE", "to", l.Max, "err", err)
			return
		}
	}
	// Each connection is one descriptor here, and one more in a spawned
	// natter; leave room for files, listeners and NATS.
	need := uint64(max(cfg.Conns, 2*cfg.Pairs)) + 256
	if l.Cur < need {
		log.Warn("RLIMIT_NOFILE is below what the run may open", "limit", l.Cur, "need", need)
	}
}
