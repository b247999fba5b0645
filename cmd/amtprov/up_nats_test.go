package main

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/telemetry"
)

// natsConfServer runs one nats-server in-process from the very
// configuration `amtprov up` gives its cluster (deploy/nats/cluster.conf
// and accounts.conf), with fresh passwords, and returns its URL and the
// passwords.
func natsConfServer(t *testing.T) (string, map[string]string) {
	t.Helper()
	users := []string{natsUserOps, natsUserCLI, natsUserSys}
	for _, s := range upServices() {
		users = append(users, s.name)
	}
	pw, err := newNATSPasswords(users)
	if err != nil {
		t.Fatal(err)
	}
	for u, p := range pw {
		t.Setenv(natsPassEnv(u), p)
	}
	opts, err := server.ProcessConfigFile(filepath.Join("..", "..", "deploy", "nats", "cluster.conf"))
	if err != nil {
		t.Fatalf("deploy/nats/cluster.conf: %v", err)
	}
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
	opts.StoreDir = t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns.ClientURL(), pw
}

// permConn is a connection as one user that records permission violations.
type permConn struct {
	nc *nats.Conn
	mu sync.Mutex
	// violations are the server's permission errors, e.g.
	// `Permissions Violation for Publish to "amt.v1.cert.issued.x"`.
	violations []string
}

func connectUser(t *testing.T, srvURL, user, password string) *permConn {
	t.Helper()
	u, err := url.Parse(srvURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, password)
	pc := &permConn{}
	nc, err := nats.Connect(u.String(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			pc.mu.Lock()
			pc.violations = append(pc.violations, err.Error())
			pc.mu.Unlock()
		}
	}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	pc.nc = nc
	return pc
}

// violated polls (up to 2 s) for a permission violation mentioning subject.
func (pc *permConn) violated(subject string) bool {
	deadline := time.After(2 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		pc.mu.Lock()
		hit := slices.ContainsFunc(pc.violations, func(v string) bool { return strings.Contains(v, `"`+subject+`"`) })
		pc.mu.Unlock()
		if hit {
			return true
		}
		select {
		case <-deadline:
			return false
		case <-tick.C:
		}
	}
}

// TestNATSPublishPermissions shows that each service's NATS user may
// publish its own subjects and gets a permission violation (and its message
// is dropped) outside them.
func TestNATSPublishPermissions(t *testing.T) {
	srv, pw := natsConfServer(t)
	ops := connectUser(t, srv, natsUserOps, pw[natsUserOps])
	seen := make(chan string, 64)
	sub, err := ops.nc.Subscribe("amt.>", func(m *nats.Msg) { seen <- m.Subject })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := ops.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const key = "939b524b-13d4-1d18-e487-1c697a6b7a2b"
	tests := []struct {
		user, subject string
		allowed       bool
	}{
		{"hello-listener", events.SubjectDeviceHello + "." + key, true},
		{"hello-listener", events.SubjectProvisioning + ".succeeded." + key, false},
		{"hello-listener", events.SubjectCertIssued + "." + key, false},
		{"hello-listener", events.SubjectCASign, false},
		{"inventory", events.SubjectDeviceHello + "." + key, false},
		{"inventory", events.SubjectProvisioning + ".failed." + key, false},
		{"provisioner", events.SubjectProvisioning + ".step." + key, true},
		{"provisioner", events.SubjectCASign, true},
		{"provisioner", events.SubjectDeviceHello + "." + key, false},
		{"provisioner", events.SubjectAdmin + ".domain.list", false},
		{"certauthority", events.SubjectCertIssued + "." + key, true},
		{"certauthority", events.SubjectDeviceHello + "." + key, false},
		{"certauthority", events.SubjectCASign, false},
		{"discovery", events.SubjectDeviceDiscovered + "." + key, true},
		{"discovery", events.SubjectScanCompleted + ".scan-1", true},
		{"discovery", events.SubjectDeviceHello + "." + key, false},
		{"discovery", events.SubjectCASign, false},
		// The outbox table is shared, but each relay claims only its own
		// service's topics (outbox.RelayConfig.Topics): no user may publish
		// another service's events.
		{"provisioner", events.SubjectCertIssued + "." + key, false},
		{"provisioner", events.SubjectDeviceDiscovered + "." + key, false},
		{"certauthority", events.SubjectProvisioning + ".succeeded." + key, false},
		{"certauthority", events.SubjectScanCompleted + ".scan-1", false},
		{"discovery", events.SubjectProvisioning + ".succeeded." + key, false},
		{"discovery", events.SubjectCertIssued + "." + key, false},
		{"cli", events.SubjectAdmin + ".domain.list", true},
		{"cli", events.SubjectDeviceHello + "." + key, false},
		{"cli", events.SubjectProvisioning + ".succeeded." + key, false},
	}
	for _, tt := range tests {
		pc := connectUser(t, srv, tt.user, pw[tt.user])
		if err := pc.nc.Publish(tt.subject, []byte("{}")); err != nil {
			t.Fatalf("%s publish %s: %v", tt.user, tt.subject, err)
		}
		if err := pc.nc.Flush(); err != nil {
			t.Fatalf("%s flush: %v", tt.user, err)
		}
		if tt.allowed {
			select {
			case got := <-seen:
				if got != tt.subject {
					t.Errorf("%s published %s, ops saw %s", tt.user, tt.subject, got)
				}
			case <-time.After(2 * time.Second):
				t.Errorf("%s may publish %s, but the message never arrived", tt.user, tt.subject)
			}
			continue
		}
		if !pc.violated(tt.subject) {
			t.Errorf("%s published %s outside its subjects without a permission violation", tt.user, tt.subject)
		}
		select {
		case got := <-seen:
			t.Errorf("%s's denied publish to %s was delivered (%s)", tt.user, tt.subject, got)
		default:
		}
	}
}

// TestNATSSubscribePermissions: a service may listen only where it serves.
func TestNATSSubscribePermissions(t *testing.T) {
	srv, pw := natsConfServer(t)
	tests := []struct {
		user, subject string
		allowed       bool
	}{
		{"hello-listener", "amt.v1.>", false},
		{"inventory", events.SubjectCASign, false},
		{"provisioner", events.SubjectCASign, false},
		{"provisioner", events.SubjectAdmin + ".jobs.list", true},
		{"provisioner", events.SubjectAdmin + ".domain.list", false},
		{"certauthority", events.SubjectCASign, true},
		{"certauthority", events.SubjectAdmin + ".domain.create-dev", true},
		{"discovery", events.SubjectAdmin + ".scan.run", true},
		{"cli", events.SubjectAdmin + ".domain.list", false},
	}
	ops := connectUser(t, srv, natsUserOps, pw[natsUserOps])
	for _, tt := range tests {
		pc := connectUser(t, srv, tt.user, pw[tt.user])
		sub, err := pc.nc.SubscribeSync(tt.subject)
		if err != nil {
			t.Fatalf("%s subscribe %s: %v", tt.user, tt.subject, err)
		}
		if err := pc.nc.Flush(); err != nil {
			t.Fatalf("%s flush: %v", tt.user, err)
		}
		if !tt.allowed {
			if !pc.violated(tt.subject) {
				t.Errorf("%s subscribed to %s outside its subjects without a permission violation", tt.user, tt.subject)
			}
			continue
		}
		// Allowed: a message published there arrives.
		if err := ops.nc.Publish(strings.ReplaceAll(tt.subject, ">", "x"), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.NextMsg(2 * time.Second); err != nil {
			t.Errorf("%s may subscribe to %s, but received nothing: %v", tt.user, tt.subject, err)
		}
	}
}

// TestNATSServicePathsWork runs the real bus calls each service makes with
// its own user: the hello listener publishes, inventory and provisioner
// create and drain their durables (fetch, ack), the provisioner asks the CA
// to sign and the CA answers. A JetStream API subject missing from
// accounts.conf would fail here.
func TestNATSServicePathsWork(t *testing.T) {
	srv, pw := natsConfServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js := func(user string) jetstream.JetStream {
		t.Helper()
		j, err := jetstream.New(connectUser(t, srv, user, pw[user]).nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bus.EnsureStream(ctx, j, bus.StreamConfig{}); err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		return j
	}

	hello := &events.DeviceHello{UUID: "939b524b-13d4-1d18-e487-1c697a6b7a2b", SourceIP: "192.0.2.7", InterfaceVersion: 3, ReceivedAt: time.Now().UTC()}
	pub := bus.NewPublisher(js("hello-listener"), "/hello-listener/test", telemetry.Providers{})
	if err := pub.Publish(ctx, hello, events.HelloID(hello.UUID, 0)); err != nil {
		t.Fatalf("hello-listener publish: %v", err)
	}

	for _, c := range []struct{ user, durable, filter string }{
		{"inventory", "inventory", ""},
		{"provisioner", "provisioner", events.SubjectDeviceHello + ".>"},
		{"discovery", "discovery-verify", events.SubjectDeviceHello + ".>"},
	} {
		cfg := bus.ConsumerConfig{Durable: c.durable}
		if c.filter != "" {
			cfg.FilterSubjects = []string{c.filter}
		}
		cons, err := bus.EnsureConsumer(ctx, js(c.user), cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.user, err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("%s fetch: %v", c.user, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if err := m.InProgress(); err != nil {
				t.Fatalf("%s in progress: %v", c.user, err)
			}
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatalf("%s ack: %v", c.user, err)
			}
		}
		if n != 1 || batch.Error() != nil {
			t.Fatalf("%s fetched %d messages (%v), want 1", c.user, n, batch.Error())
		}
	}

	// Discovery's shard work queue (its own stream AMT_WORK).
	djs := js("discovery")
	if _, err := djs.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "AMT_WORK", Subjects: []string{"amt.work.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("discovery AMT_WORK stream: %v", err)
	}
	shards, err := djs.CreateOrUpdateConsumer(ctx, "AMT_WORK", jetstream.ConsumerConfig{Durable: "discovery-shards",
		FilterSubject: "amt.work.discovery.shard", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("discovery shard consumer: %v", err)
	}
	if _, err := djs.Publish(ctx, "amt.work.discovery.shard", []byte(`{}`)); err != nil {
		t.Fatalf("discovery publish shard: %v", err)
	}
	shard, err := shards.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("discovery next shard: %v", err)
	}
	if err := shard.DoubleAck(ctx); err != nil {
		t.Fatalf("discovery ack shard: %v", err)
	}

	// A service cannot take over another's durable.
	inv := js("inventory")
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	if _, err := bus.EnsureConsumer(short, inv, bus.ConsumerConfig{Durable: "provisioner"}); err == nil {
		t.Error("inventory created or updated the provisioner's durable")
	}

	// CA sign request/reply between the two users.
	ca := connectUser(t, srv, "certauthority", pw["certauthority"])
	if _, err := ca.nc.QueueSubscribe(events.SubjectCASign, "certauthority", func(m *nats.Msg) { _ = m.Respond([]byte(`{"serial":"1"}`)) }); err != nil {
		t.Fatal(err)
	}
	if err := ca.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	prov := connectUser(t, srv, "provisioner", pw["provisioner"])
	reply, err := prov.nc.RequestWithContext(ctx, events.SubjectCASign, []byte(`{}`))
	if err != nil {
		t.Fatalf("provisioner CA sign request: %v", err)
	}
	if string(reply.Data) != `{"serial":"1"}` {
		t.Errorf("CA sign reply %q, want the certauthority's answer", reply.Data)
	}
}
