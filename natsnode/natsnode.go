// Package natsnode runs the embedded nats-server with JetStream that a
// single natter node uses by default.
package natsnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"
)

// Options configure the embedded server.
type Options struct {
	// StoreDir is where JetStream keeps its files.
	StoreDir string
	// Listen is host:port for NATS clients; empty means in-process only.
	Listen string
	// SyncAlways makes JetStream fsync every write before acknowledging it;
	// otherwise it syncs every SyncInterval.
	SyncAlways   bool
	SyncInterval time.Duration
	// Logger receives the server's warnings and errors (a failing disk
	// shows up here first); its notices go to debug. Nil discards all.
	Logger *slog.Logger
	// Operator is the account that NATS tools (natter status, the nats
	// CLI) log in with; required when Listen is set, unless Insecure.
	Operator Credentials
	// Insecure turns authentication off: anyone who reaches Listen gets
	// every JetStream right. Only for a listener nobody else can reach.
	Insecure bool
	// CalloutIssuer, when set (a public account nkey), sends every login
	// that is not natter's own or the operator's to nats-server's auth
	// callout, whose answers that key signs: natter's NATS-native
	// clients log in with their access token (gateway.NATS).
	CalloutIssuer string
	// Cluster, when set, makes this server one node of a NATS cluster
	// with clustered JetStream (cluster.go); nil runs a single node.
	Cluster *Cluster
}

// Node is a running embedded server.
type Node struct {
	srv *server.Server
	// self is natter's own login, generated per start and never stored:
	// only this process's in-process connections know it.
	self Credentials
}

// Start starts the server and waits until it accepts connections.
func Start(o Options) (*Node, error) {
	opts := &server.Options{
		ServerName:   "natter",
		JetStream:    true,
		StoreDir:     filepath.Clean(o.StoreDir),
		SyncAlways:   o.SyncAlways,
		SyncInterval: o.SyncInterval,
		NoSigs:       true,
		NoLog:        true,
		MaxPayload:   4 << 20,
	}
	if o.Cluster != nil {
		if err := o.Cluster.apply(opts); err != nil {
			return nil, err
		}
	}
	switch {
	case o.Listen == "" && o.Cluster != nil:
		// nats-server starts its routes only once it listens for clients:
		// a loopback port of its choosing, which only natter's own
		// (per-start) login can use.
		opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
		opts.Cluster.NoAdvertise = true
	case o.Listen == "":
		opts.DontListen = true
	default:
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen address %q: %w", o.Listen, err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("nats listen port %q: %w", port, err)
		}
	}
	if o.Logger != nil {
		opts.NoLog = false
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var self Credentials
	switch {
	case o.Insecure:
		log.Error("NATS AUTHENTICATION IS OFF (--nats-insecure): anyone who reaches the NATS port reads every message and can write as any user", "listen", o.Listen)
	case o.Listen != "" && (o.Operator.User == "" || o.Operator.Password == ""):
		return nil, fmt.Errorf("nats listen %s: operator credentials are required (or Insecure)", o.Listen)
	default:
		var err error
		if self, err = newCredentials(selfUser); err != nil {
			return nil, err
		}
		// The server holds bcrypt hashes only, so that the passwords are
		// not in its memory in clear (it warns otherwise). Both are 256
		// random bits, which stretching would not make harder to guess,
		// so the cost is the least: a login checks in well under a
		// millisecond, where cost 10 took seconds under -race.
		selfHash, err := bcrypt.GenerateFromPassword([]byte(self.Password), bcrypt.MinCost)
		if err != nil {
			return nil, fmt.Errorf("hash nats password: %w", err)
		}
		opts.Users = []*server.User{{Username: self.User, Password: string(selfHash)}}
		if o.Operator.User != "" {
			if o.Operator.User == selfUser {
				return nil, fmt.Errorf("nats operator user must not be %q", selfUser)
			}
			opHash, err := bcrypt.GenerateFromPassword([]byte(o.Operator.Password), bcrypt.MinCost)
			if err != nil {
				return nil, fmt.Errorf("hash nats password: %w", err)
			}
			opts.Users = append(opts.Users, &server.User{Username: o.Operator.User, Password: string(opHash)})
		}
		if o.CalloutIssuer != "" {
			auth := []string{self.User}
			if o.Operator.User != "" {
				auth = append(auth, o.Operator.User)
			}
			opts.AuthCallout = &server.AuthCallout{Issuer: o.CalloutIssuer, AuthUsers: auth}
		}
	}
	if o.Listen != "" && !isLoopback(opts.Host) {
		log.Warn("NATS listens on a non-loopback address without TLS: passwords and messages cross the network in clear; keep the port on loopback or behind a TLS tunnel", "listen", o.Listen)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("create nats server: %w", err)
	}
	if o.Logger != nil {
		srv.SetLogger(slogAdapter{o.Logger.With("component", "nats")}, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats server not ready after 30s (store %s)", o.StoreDir)
	}
	return &Node{srv: srv, self: self}, nil
}

// isLoopback reports whether host (an IP or a name) only accepts
// connections from this machine; "" and 0.0.0.0 mean every interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Connect opens an in-process client connection, logged in as natter
// itself.
func (n *Node) Connect(name string) (*nats.Conn, error) {
	copts := []nats.Option{nats.InProcessServer(n.srv), nats.Name(name), nats.MaxReconnects(-1)}
	if n.self.User != "" {
		copts = append(copts, nats.UserInfo(n.self.User, n.self.Password))
	}
	nc, err := nats.Connect("", copts...)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded nats: %w", err)
	}
	return nc, nil
}

// ClientURL is the address NATS tools can use, empty when not listening.
func (n *Node) ClientURL() string {
	if n.srv.Addr() == nil {
		return ""
	}
	return n.srv.ClientURL()
}

// Shutdown stops the server and waits for it; safe to call twice.
func (n *Node) Shutdown() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

// slogAdapter is nats-server's Logger over slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.log(slog.LevelDebug, format, v) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.log(slog.LevelWarn, format, v) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.log(slog.LevelError, format, v) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.log(slog.LevelError, format, v) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.log(slog.LevelDebug, format, v) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.log(slog.LevelDebug-4, format, v) }

func (a slogAdapter) log(level slog.Level, format string, v []any) {
	if a.l.Enabled(context.Background(), level) {
		a.l.Log(context.Background(), level, fmt.Sprintf(format, v...))
	}
}

// ErrWriteFailed marks a stream that JetStream closed after a write
// error: it refuses every write until Recover (or a restart) reopens it.
var ErrWriteFailed = errors.New("stream closed by a write error")

// Healthy returns nil when JetStream is running and every stream is open.
// A stream closed by a write error (EMFILE, a full disk) is named, and
// the error matches ErrWriteFailed.
func (n *Node) Healthy() error {
	h := n.srv.Healthz(&server.HealthzOptions{Details: true})
	if h.Status == "ok" && len(h.Errors) == 0 {
		return nil
	}
	var errs []error
	for _, e := range h.Errors {
		if e.Type == server.HealthzErrorStream && strings.Contains(e.Error, "write error") {
			errs = append(errs, fmt.Errorf("%w: %s", ErrWriteFailed, e.Error))
			continue
		}
		errs = append(errs, errors.New(e.Error))
	}
	if len(errs) == 0 {
		errs = append(errs, fmt.Errorf("status %q (%d)", h.Status, h.StatusCode))
	}
	return fmt.Errorf("jetstream unhealthy: %w", errors.Join(errs...))
}

// Recover reopens every stream from its files, which clears a write
// error once its cause (no descriptors left, a full disk) is gone.
// Connections stay up; for the moment it takes (milliseconds for a small
// store) JetStream answers nothing, and consumers resume from their
// stored state. It returns Healthy's verdict afterwards.
func (n *Node) Recover() error {
	acc := n.srv.GlobalAccount()
	if err := acc.DisableJetStream(); err != nil {
		return fmt.Errorf("recover jetstream: stop: %w", err)
	}
	if err := acc.EnableJetStream(nil, nil); err != nil {
		return fmt.Errorf("recover jetstream: reopen: %w", err)
	}
	return n.Healthy()
}

// Guard checks JetStream every interval until ctx ends and reopens the
// streams that a write error closed, once their files can be written
// again; while they cannot, it retries at every check and logs each
// failure. It returns when ctx ends.
func (n *Node) Guard(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := n.Healthy()
		if !errors.Is(err, ErrWriteFailed) {
			continue
		}
		log.Error("jetstream stream closed by a write error; reopening it", "err", err)
		if err := n.Recover(); err != nil {
			log.Error("jetstream not recovered; retrying", "err", err, "in", interval)
			continue
		}
		log.Info("jetstream recovered from the write error")
	}
}
