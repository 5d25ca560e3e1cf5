package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/nats-io/nats-server/v2/server"
)

// version prints what this binary is: natter's module version, the VCS
// revision and time it was built from, the Go toolchain and the embedded
// nats-server.
func version(out io.Writer) error {
	mod, rev, when, dirty := "(unknown)", "(unknown)", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			mod = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty {
		rev += " (modified)"
	}
	if when != "" {
		rev += " " + when
	}
	_, err := fmt.Fprintf(out, "natter %s\nrevision %s\ngo %s %s/%s\nnats-server %s\n",
		mod, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH, server.VERSION)
	return err
}
