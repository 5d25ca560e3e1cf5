// Command natter is the natter messaging backend: `natter serve` runs a
// node, `natter bench` measures one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/natter-chat/natter/bench"
)

const usage = `natter: a messaging backend on NATS JetStream.

Usage:
  natter serve [flags]      run a node (embedded NATS and store by default)
  natter bench SCENARIO     load-test a node (natter bench -h)
  natter migrate [flags]    apply the store's schema migrations and exit
  natter status             streams and consumer lag of a node started with --nats-listen
  natter help               this text

Every serve flag can also be set as NATTER_<FLAG> (e.g. NATTER_HTTP) or in a
config file given with -config (lines of "flag value").
`

func main() {
	err := run(os.Args[1:])
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "natter:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("missing subcommand")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:])
	case "migrate":
		return migrate(ctx, args[1:], os.Stdout)
	case "status":
		return status(ctx, args[1:], os.Stdout)
	case "bench":
		return bench.Main(ctx, args[1:], os.Stdout, os.Stderr)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown subcommand %q", args[0])
	}
}
