// Command natter is the natter messaging backend: `natter serve` runs a
// node, `natter bench` measures one, and the commands of cli.go are a
// client for people (`natter chat`) and operators (`natter streams`).
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

var usage = `natter: a messaging backend on NATS JetStream.

Usage:
  natter serve [flags]      run a node (embedded NATS and store by default)
  natter bench SCENARIO     load-test a node (natter bench -h)
  natter migrate [flags]    apply the store's schema migrations and exit
  natter status [flags]     streams and consumer lag of a node started with --nats-listen
  natter version            natter's version and revision, Go's and nats-server's
  natter help               this text
` + cliUsage + `
Every serve flag can also be set as an environment variable, NATTER_ then
the flag's name in upper case with dashes as underscores (--sync-interval
is NATTER_SYNC_INTERVAL), or in a config file given with -config: TOML
(.toml), YAML (.yaml, .yml), JSON (.json), or else lines of "flag value".
A flag beats the environment, which beats the file.
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
	case "version", "-version", "--version":
		return version(os.Stdout)
	case "bench":
		return bench.Main(ctx, args[1:], os.Stdout, os.Stderr)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	default:
		if cmd, ok := cliCommands[args[0]]; ok {
			return cmd(ctx, args[1:], stdIO())
		}
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown subcommand %q", args[0])
	}
}
