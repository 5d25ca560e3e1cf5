package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/natter-chat/natter/chat/auth"
	"github.com/natter-chat/natter/config"
	"github.com/natter-chat/natter/natsnode"
	"github.com/natter-chat/natter/streams"
)

// natsLink is how this node reaches NATS: an embedded server (alone or
// one node of a cluster) or an external cluster, where node is nil.
type natsLink struct {
	node *natsnode.Node
	nc   *nats.Conn
	// size is the number of nodes the settings describe: 1 alone, the
	// routes' nodes when embedded, the URLs when external.
	size int
}

// startNATS starts the embedded server with o (and the cluster settings
// of cfg) and connects to it, or connects to the external cluster of
// --nats-url. The caller closes nc, then shuts node down.
func startNATS(cfg config.Server, tokenKey []byte, o natsnode.Options, log *slog.Logger) (natsLink, error) {
	if cfg.Cluster.External() {
		nc, err := connectExternal(cfg.Cluster, log)
		return natsLink{nc: nc, size: len(cfg.Cluster.URLs)}, err
	}
	link := natsLink{size: 1}
	if cfg.Cluster.Embedded() {
		c, err := clusterOptions(cfg, tokenKey)
		if err != nil {
			return link, err
		}
		o.Cluster, link.size = c, c.Size()
		log.Info("nats cluster node", "cluster", c.Name, "name", c.ServerName, "routes_listen", c.Listen, "nodes", link.size)
	}
	node, err := natsnode.Start(o)
	if err != nil {
		return link, err
	}
	nc, err := node.Connect("natter")
	if err != nil {
		node.Shutdown()
		return link, err
	}
	link.node, link.nc = node, nc
	return link, nil
}

// What the nodes of a cluster share besides the token key is derived
// from it, so that one file is all an operator copies between nodes
// (docs/operations.md, "Running a cluster").
func derivedKey(tokenKey []byte, purpose string) []byte {
	return auth.NewSigner(tokenKey, time.Hour).DeriveKey(purpose)
}

// newCalloutKey is the key that signs NATS-native clients' logins: made
// anew at every start on a single node; on a cluster the same on every
// node, derived from the token key, since another node's callout (a
// queue group) may answer a login.
func newCalloutKey(cfg config.Server, tokenKey []byte) (nkeys.KeyPair, error) {
	if cfg.Cluster.Embedded() {
		return nkeys.FromRawSeed(nkeys.PrefixByteAccount, derivedKey(tokenKey, "nats auth callout"))
	}
	return nkeys.CreateAccount()
}

// clusterOptions reads this node's name (made on the first start when not
// given) and the route secret: --nats-cluster-secret-file's, or derived
// from the token key.
func clusterOptions(cfg config.Server, tokenKey []byte) (*natsnode.Cluster, error) {
	c := &natsnode.Cluster{Name: cfg.Cluster.Name, ServerName: cfg.Cluster.ServerName, Listen: cfg.Cluster.Listen, Routes: cfg.Cluster.Routes}
	var err error
	if c.ServerName == "" {
		if c.ServerName, err = natsnode.LoadOrCreateServerName(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	if cfg.Cluster.SecretFile != "" {
		b, err := os.ReadFile(cfg.Cluster.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("nats cluster secret: %w", err)
		}
		c.Secret = strings.TrimSpace(string(b))
	} else {
		c.Secret = hex.EncodeToString(derivedKey(tokenKey, "nats cluster routes"))
	}
	return c, nil
}

// connectExternal connects to an external cluster. It retries the first
// connection too: the cluster may still be starting.
func connectExternal(c config.Cluster, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("natter"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second)}
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	nc, err := nats.Connect(strings.Join(c.URLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", redacted(c.URLs), err)
	}
	log.Info("using an external nats cluster", "urls", redacted(c.URLs))
	return nc, nil
}

// redacted lists the URLs' hosts only: they may carry passwords.
func redacted(urls []string) string {
	hosts := make([]string, 0, len(urls))
	for _, s := range urls {
		if u, err := url.Parse(s); err == nil {
			hosts = append(hosts, u.Scheme+"://"+u.Host)
		}
	}
	return strings.Join(hosts, ",")
}

// clusterMode adapts the single-node switches to the link: the replica
// count when not set, and, with other processes on the streams, the
// shortcuts that assume this one is alone (docs/architecture.md,
// "Cluster mode").
func clusterMode(cfg config.Server, link natsLink, log *slog.Logger) config.Server {
	if cfg.StreamReplicas == 0 {
		cfg.StreamReplicas = config.AutoReplicas(link.size)
	}
	if cfg.Cluster.On() {
		// Other nodes sequence too: the dedupe filter would miss their ids.
		cfg.SoleSequencer = false
		// Another node's consumer may be handling what is in flight.
		cfg.ResetOnStart = false
		log.Info("cluster mode", "replicas", cfg.StreamReplicas, "sole_sequencer", false, "reset_on_start", false)
	}
	return cfg
}

// waitJetStream waits until JetStream answers: on a cluster, until its
// meta group has a leader, which takes a quorum of nodes. Meanwhile it
// says every few seconds how many nodes it sees.
func waitJetStream(ctx context.Context, js jetstream.JetStream, link natsLink, log *slog.Logger) error {
	if link.node == nil && link.size <= 1 && !link.nc.IsConnected() {
		return errors.New("nats: not connected")
	}
	start, lastLog := time.Now(), time.Time{}
	for {
		if link.node == nil || link.node.JetStreamReady() {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := js.AccountInfo(actx)
			cancel()
			if err == nil {
				if time.Since(start) > time.Second {
					log.Info("nats cluster ready", "after", time.Since(start).Round(time.Millisecond))
				}
				return nil
			}
			if link.node != nil && link.size <= 1 {
				return fmt.Errorf("jetstream: %w", err)
			}
		}
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			seen := 0
			if link.node != nil {
				seen = link.node.ClusterNodes()
			}
			log.Info(fmt.Sprintf("waiting for the NATS cluster: %d of %d nodes", seen, link.size), "connected", link.nc.IsConnected())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the nats cluster: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ensureStreams declares the streams; on a cluster it retries while too
// few nodes are up to place the replicas.
func ensureStreams(ctx context.Context, js jetstream.JetStream, setup streams.Setup, fanoutPartitions int, clustered bool, log *slog.Logger) error {
	// Nodes declaring the same stream at once: nats-server answers one of
	// them and leaves the others without an answer (seen with v2.15.2),
	// so every try is short and the next finds the stream in place.
	const try = 5 * time.Second
	if clustered {
		pctx, cancel := context.WithTimeout(ctx, try)
		if err := streams.Place(pctx, js, setup); err != nil {
			log.Info("streams not all placed at once; declaring them one by one", "err", err)
		}
		cancel()
	}
	lastLog := time.Time{}
	for {
		actx, cancel := context.WithTimeout(ctx, try)
		err := streams.Ensure(actx, js, setup)
		if err == nil {
			err = streams.EnsureFanoutQueue(actx, js, setup, fanoutPartitions)
		}
		cancel()
		if err == nil || !clustered || ctx.Err() != nil {
			return err
		}
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			log.Info("waiting for the NATS cluster to place the streams", "replicas", setup.Limits.Replicas, "err", err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// jetStreamHealth is readiness's JetStream check: the embedded server's
// own health, or the external cluster's answer.
func jetStreamHealth(link natsLink, js jetstream.JetStream) func(context.Context) error {
	if link.node != nil {
		return func(context.Context) error { return link.node.Healthy() }
	}
	return func(ctx context.Context) error {
		_, err := js.AccountInfo(ctx)
		return err
	}
}
