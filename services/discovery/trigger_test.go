package discovery_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/discovery"
	"github.com/amtprov/amtprov/services/discovery/internal/simfleet"
)

// TestTriggers: a provisioning.succeeded event makes discovery scan the
// device's last known address alone and identify it over pinned TLS; a
// scheduled target is scanned by one replica when due.
func TestTriggers(t *testing.T) {
	h := newHarness(t)
	block := netip.MustParsePrefix("127.16.64.0/24")
	_, cfgs := simfleet.Start(t, simfleet.Options{Block: block, N: 2, Seed: 13, ProvisionedEvery: 1})
	h.replicaWith("a", func(c *discovery.Config) { c.ScheduleEvery = 100 * time.Millisecond })
	h.replicaWith("b", func(c *discovery.Config) { c.ScheduleEvery = 100 * time.Millisecond })
	ctx := context.Background()
	dev := cfgs[0]
	sealed, err := h.keys.Seal([]byte(simfleet.AdminPassword), secrets.CredentialAAD(dev.UUID, 1, "password_enc"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.pool.Exec(ctx, `INSERT INTO device_credentials (uuid, version, username, password_enc, key_id, tls_cert_sha256, source, active)
VALUES ($1, 1, $2, $3, 'k1', $4, 'amtprov', true)`, dev.UUID, simfleet.AdminUser, sealed, devicePin(t, dev.IP)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.pool.Exec(ctx, `INSERT INTO device_location (uuid, ip, last_seen) VALUES ($1, $2::inet, now())`, dev.UUID, dev.IP); err != nil {
		t.Fatal(err)
	}

	tel, _ := telemetry.NewForTest("provisioner")
	if err := bus.NewPublisher(h.js, "/provisioner/test", tel).Publish(ctx, &events.Provisioning{Event: events.ProvisioningSucceeded,
		UUID: dev.UUID, JobID: "1", Attempt: 1, Profile: "p", Outcome: "ok", At: time.Now()}, "prov-ok-1"); err != nil {
		t.Fatal(err)
	}
	var verify discovery.Scan
	h.eventually(20*time.Second, func() bool {
		var l discovery.ListResponse
		h.call(discovery.VerbList, struct{}{}, &l)
		for _, s := range l.Scans {
			if s.Trigger == "provisioned" && s.State == "completed" {
				verify = s
				return true
			}
		}
		return false
	})
	if len(verify.Targets) != 1 || verify.Targets[0] != dev.IP+"/32" || verify.AddressesTotal != 1 || verify.Found != 1 || verify.Identified != 1 {
		t.Errorf("verification scan %+v", verify)
	}
	if r := h.results(verify.ID)[dev.IP]; r.uuid != dev.UUID || r.method != "wsman" || r.source != discovery.SourceAmtprov {
		t.Errorf("verified device: %+v", r)
	}

	var tgt discovery.Target
	h.call(discovery.VerbAdd, discovery.AddTargetRequest{CIDR: block.String(), Schedule: "1h",
		RMCPPort: simfleet.RMCPPort, HTTPPort: simfleet.HTTPPort, TLSPort: simfleet.TLSPort}, &tgt)
	if tgt.Schedule != "1h0m0s" {
		t.Errorf("target %+v", tgt)
	}
	var sched []discovery.Scan
	h.eventually(20*time.Second, func() bool {
		var l discovery.ListResponse
		h.call(discovery.VerbList, struct{}{}, &l)
		sched = sched[:0]
		for _, s := range l.Scans {
			if s.Trigger == "schedule" {
				sched = append(sched, s)
			}
		}
		return len(sched) == 1 && sched[0].State == "completed"
	})
	if sched[0].Found != 2 {
		t.Errorf("scheduled scan %+v", sched[0])
	}
	// Due again only in an hour: two replicas polling every 100 ms start no second scan.
	var l discovery.ListResponse
	h.call(discovery.VerbList, struct{}{}, &l)
	n := 0
	for _, s := range l.Scans {
		if s.Trigger == "schedule" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d scheduled scans, want 1", n)
	}
}

// TestShardThatKeepsFailingFailsTheScan: a shard that fails on its last
// allowed delivery (here: credentials that no key opens) marks its scan
// failed instead of leaving it running forever.
func TestShardThatKeepsFailingFailsTheScan(t *testing.T) {
	h := newHarness(t)
	h.replicaWith("a", func(c *discovery.Config) { c.MaxDeliver = 1 })
	ctx := context.Background()
	const id = "scan-broken"
	for _, q := range []string{
		`INSERT INTO discovery_scans (id, trigger, targets, shards_total, addresses_total) VALUES ('scan-broken', 'cli', '{127.16.99.0/24}', 1, 254)`,
		`INSERT INTO discovery_shards (scan_id, shard, target, addresses) VALUES ('scan-broken', '127.16.99.0/24', '127.16.99.0/24', 254)`,
		`INSERT INTO discovery_credentials (scan_id, row_no, match, username, password_enc, key_id) VALUES ('scan-broken', 0, '127.16.99.0/24', 'admin', '\x00', 'gone')`,
	} {
		if _, err := h.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	msg := `{"scan_id":"scan-broken","shard":"127.16.99.0/24","target":"127.16.99.0/24","rate":1000,"rmcp_port":26623,"http_port":26992,"tls_port":26993}`
	if _, err := h.js.Publish(ctx, discovery.ShardSubject, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	h.eventually(20*time.Second, func() bool { return h.status(id).State == "failed" })
	if s := h.status(id); s.Error == "" || s.FinishedAt == nil {
		t.Errorf("failed scan %+v", s)
	}
}

// TestLongShardKeepsItsLease: a shard that takes several AckWaits to sweep
// is kept leased by heartbeats and delivered once.
func TestLongShardKeepsItsLease(t *testing.T) {
	h := newHarness(t)
	h.replicaWith("a", func(c *discovery.Config) { c.AckWait = time.Second })
	var tgt discovery.Target
	h.call(discovery.VerbAdd, discovery.AddTargetRequest{CIDR: "127.16.98.0/24", RateLimit: 80,
		RMCPPort: simfleet.RMCPPort, HTTPPort: simfleet.HTTPPort, TLSPort: simfleet.TLSPort}, &tgt)
	var sc discovery.Scan
	start := time.Now()
	h.call(discovery.VerbRun, discovery.RunRequest{CIDRs: []string{"127.16.98.0/24"}}, &sc)
	h.eventually(30*time.Second, func() bool { return h.status(sc.ID).State == "completed" })
	if d := time.Since(start); d < 3*time.Second {
		t.Fatalf("the shard took %v, not several AckWaits: the test proves nothing", d)
	}
	var deliveries int
	if err := h.pool.QueryRow(context.Background(), `SELECT deliveries FROM discovery_shards WHERE scan_id = $1`, sc.ID).Scan(&deliveries); err != nil || deliveries != 1 {
		t.Errorf("shard delivered %d times (err %v), want once", deliveries, err)
	}
	rec := httptest.NewRecorder()
	h.metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if body := rec.Body.String(); !strings.Contains(body, `outcome="done"`) || strings.Contains(body, `outcome="redelivered"`) {
		t.Errorf("shard outcomes in /metrics:\n%s", grepLines(body, "amtprov_discovery_shards_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
