package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtprov/amtprov/libs/bus"
)

// NATS users besides the services' own (deploy/nats/accounts.conf).
const (
	natsUserOps = "ops" // amtprov up itself; everything
	natsUserCLI = "cli" // the operator CLI: admin requests, events tail
	natsUserSys = "sys" // the system account
)

// natsPassEnv is the variable deploy/nats/accounts.conf reads user's
// password from: AMTPROV_NATS_PASS_<USER> with '-' as '_'.
func natsPassEnv(user string) string {
	return "AMTPROV_NATS_PASS_" + strings.ToUpper(strings.ReplaceAll(user, "-", "_"))
}

// newNATSPasswords makes a fresh random password for every user. A password
// starts with a letter and is otherwise hex, because the NATS configuration
// parser reads an environment value as a configuration value (a leading
// digit would make it a number).
func newNATSPasswords(users []string) (map[string]string, error) {
	pw := make(map[string]string, len(users))
	for _, u := range users {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("generate NATS password: %w", err)
		}
		pw[u] = "p" + hex.EncodeToString(b)
	}
	return pw, nil
}

// natsNode is one server of the local cluster.
type natsNode struct {
	name    string
	client  string // host:port
	route   string
	monitor string
	proc    *upProc
}

// natsCluster is the 3-node cluster `amtprov up` runs.
type natsCluster struct {
	nodes     []*natsNode
	passwords map[string]string
}

// clientURLs lists every node's client URL with user's credentials in it,
// comma-separated as bus.Config.URL takes them.
func (c *natsCluster) clientURLs(user string) string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		u := url.URL{Scheme: "nats", User: url.UserPassword(user, c.passwords[user]), Host: n.client}
		urls[i] = u.String()
	}
	return strings.Join(urls, ",")
}

// publicURLs lists the client URLs without credentials, for printing.
func (c *natsCluster) publicURLs() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = "nats://" + n.client
	}
	return strings.Join(urls, ",")
}

// startNATSCluster starts size nats-server processes from bin with the
// configuration deploy/nats/cluster.conf, routed to each other, each with
// its JetStream store under dir, and waits until every node reports healthy
// JetStream.
func startNATSCluster(ctx context.Context, bin, confPath, dir, logDir string, size int, passwords map[string]string, timeout time.Duration, onStart func(*upProc)) (*natsCluster, error) {
	addrs, err := freeAddrs("127.0.0.1", 3*size)
	if err != nil {
		return nil, err
	}
	c := &natsCluster{passwords: passwords}
	routes := make([]string, size)
	for i := range size {
		n := &natsNode{name: fmt.Sprintf("nats-%d", i+1), client: addrs[3*i], route: addrs[3*i+1], monitor: addrs[3*i+2]}
		c.nodes = append(c.nodes, n)
		routes[i] = "nats://" + n.route
	}
	env := make([]string, 0, len(passwords))
	for u, p := range passwords {
		env = append(env, natsPassEnv(u)+"="+p)
	}
	for i, n := range c.nodes {
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, r)
			}
		}
		args := []string{
			"-c", confPath,
			"-n", n.name,
			"-a", "127.0.0.1", "-p", portOf(n.client),
			"-m", portOf(n.monitor),
			"-sd", filepath.Join(dir, n.name),
			"--cluster_name", "amtprov",
			"--cluster", "nats://" + n.route,
			"--routes", strings.Join(peers, ","),
		}
		p, err := startUpProc(n.name, bin, args, env, logDir)
		if err != nil {
			return c, err
		}
		n.proc = p
		onStart(p)
	}
	for _, n := range c.nodes {
		// /healthz answers 200 once the node's JetStream is current with
		// the cluster's meta leader.
		if err := n.proc.waitHTTP(ctx, "http://"+n.monitor+"/healthz", timeout); err != nil {
			return c, err
		}
	}
	return c, nil
}

// ensureReplicatedStream creates (or updates) the AMT stream with replicas
// copies as the ops user. A freshly formed cluster may still be electing
// its meta leader, so failures are retried until timeout.
func ensureReplicatedStream(ctx context.Context, c *natsCluster, replicas int, timeout time.Duration, log *slog.Logger) error {
	nc, err := bus.Connect(ctx, bus.Config{URL: c.clientURLs(natsUserOps), Name: "amtprov-up"}, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 2 * time.Second
	b.MaxElapsedTime = timeout
	op := func() error {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := bus.EnsureStream(actx, js, bus.StreamConfig{Replicas: replicas})
		return err
	}
	if err := backoff.Retry(op, backoff.WithContext(b, ctx)); err != nil {
		return fmt.Errorf("create stream with %d replicas on the NATS cluster: %w", replicas, err)
	}
	return nil
}

// writeNATSURLFiles writes one file per user under dir (mode 0600, dir
// 0700) holding that user's client URLs with its password, so an operator
// or a test can connect as that user: NATS_URL=$(cat dir/cli.url).
func writeNATSURLFiles(dir string, c *natsCluster, users []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("credentials dir: %w", err)
	}
	for _, u := range users {
		if err := os.WriteFile(filepath.Join(dir, u+".url"), []byte(c.clientURLs(u)+"\n"), 0o600); err != nil {
			return fmt.Errorf("write NATS URL of %s: %w", u, err)
		}
	}
	return nil
}
