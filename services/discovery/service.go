package discovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/time/rate"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/outbox"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/discovery/sweep"
)

// Work queue of shards: a stream of its own, outside the public amt.v1.>
// contract (wave-2 contract), with WorkQueue retention so a shard is gone
// once a replica acknowledges it.
const (
	WorkStream   = "AMT_WORK"
	WorkSubjects = "amt.work.>"
	ShardSubject = "amt.work.discovery.shard"
)

// Admin verbs (amt.v1.admin.scan.<verb>).
const (
	VerbAdd    = "add"
	VerbList   = "list"
	VerbRun    = "run"
	VerbStatus = "status"
)

// Config tunes a discovery replica. Zero values take the defaults.
type Config struct {
	// Name identifies the replica in logs, events (ce-source) and
	// discovery_shards.worker (default "discovery").
	Name string
	// ShardBits is the prefix length of a shard (default 24).
	ShardBits int
	// ShardWorkers is how many shards this replica sweeps at once (default
	// 64): a shard spends most of its time waiting (pongs, per-device
	// spacing), so many run at once within the same packet budget.
	ShardWorkers int
	// GlobalRate caps this replica's packets per second over all shards
	// (default 20000); each target's rate_limit applies within it.
	GlobalRate float64
	// DefaultRate is the packets/s of a block outside every target (default 1000).
	DefaultRate int
	// AckWait is how long a leased shard may go without a heartbeat before
	// JetStream gives it to another replica (default 30 s); MaxDeliver
	// bounds its deliveries (default 10).
	AckWait    time.Duration
	MaxDeliver int
	// ScheduleEvery is how often due targets are looked for (default 30 s;
	// negative: no scheduler in this replica).
	ScheduleEvery time.Duration
	// Sweep holds the probe settings (timeouts, per-device interval,
	// concurrency) and the ports of blocks outside every target.
	Sweep sweep.Config
	// ShardDurable and VerifyDurable name the consumers (defaults
	// "discovery-shards" and "discovery-verify").
	ShardDurable, VerifyDurable string
	// WorkReplicas is the AMT_WORK stream's replica count (default 1).
	WorkReplicas int
	// IdentifyConcurrency bounds WS-Man identifications in flight in this
	// replica (default 32): each is a TLS handshake and a dozen digest
	// round trips, and a burst of them must not starve the probes.
	IdentifyConcurrency int
	// WSManTimeout bounds one WS-Man call of an identification (default 10 s).
	WSManTimeout time.Duration
}

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name = "discovery"
	}
	if c.ShardBits == 0 {
		c.ShardBits = 24
	}
	if c.ShardWorkers == 0 {
		c.ShardWorkers = 64
	}
	if c.GlobalRate == 0 {
		c.GlobalRate = 20000
	}
	if c.DefaultRate == 0 {
		c.DefaultRate = sweep.DefaultRate
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 10
	}
	if c.ScheduleEvery == 0 {
		c.ScheduleEvery = 30 * time.Second
	}
	if c.ShardDurable == "" {
		c.ShardDurable = "discovery-shards"
	}
	if c.VerifyDurable == "" {
		c.VerifyDurable = "discovery-verify"
	}
	if c.WorkReplicas == 0 {
		c.WorkReplicas = 1
	}
	if c.IdentifyConcurrency == 0 {
		c.IdentifyConcurrency = 32
	}
	if c.WSManTimeout == 0 {
		c.WSManTimeout = 10 * time.Second
	}
	if c.Sweep.RMCPPort == 0 {
		c.Sweep.RMCPPort = sweep.DefaultRMCPPort
	}
	if c.Sweep.HTTPPort == 0 {
		c.Sweep.HTTPPort = sweep.DefaultHTTPPort
	}
	if c.Sweep.TLSPort == 0 {
		c.Sweep.TLSPort = sweep.DefaultTLSPort
	}
}

// Target is a row of discovery_targets.
type Target struct {
	ID        int64      `json:"id"`
	CIDR      string     `json:"cidr"`
	Schedule  string     `json:"schedule,omitempty"` // Go duration, e.g. "1h0m0s"; empty: on demand
	RateLimit int        `json:"rate_limit"`         // packets/s per replica
	RMCPPort  int        `json:"rmcp_port"`
	HTTPPort  int        `json:"http_port"`
	TLSPort   int        `json:"tls_port"`
	TCPAll    bool       `json:"tcp_all"`
	Enabled   bool       `json:"enabled"`
	NextRunAt *time.Time `json:"next_run_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
}

// AddTargetRequest is the body of amt.v1.admin.scan.add. Zero values take
// the defaults (rate 1000, ports 623/16992/16993, enabled).
type AddTargetRequest struct {
	CIDR      string `json:"cidr"`
	Schedule  string `json:"schedule,omitempty"` // Go duration, at least 1m
	RateLimit int    `json:"rate_limit,omitempty"`
	RMCPPort  int    `json:"rmcp_port,omitempty"`
	HTTPPort  int    `json:"http_port,omitempty"`
	TLSPort   int    `json:"tls_port,omitempty"`
	TCPAll    bool   `json:"tcp_all,omitempty"`
	Disabled  bool   `json:"disabled,omitempty"`
}

// CredentialRow is one line of a credentials file: match is an IPv4 CIDR
// (or address) or a device UUID.
type CredentialRow struct {
	Match    string `json:"match"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// RunRequest is the body of amt.v1.admin.scan.run: the blocks to scan
// (empty: every enabled target) and other consoles' credentials.
type RunRequest struct {
	CIDRs       []string        `json:"cidrs,omitempty"`
	Credentials []CredentialRow `json:"credentials,omitempty"`
}

// Scan is a row of discovery_scans: progress and totals.
type Scan struct {
	ID              string     `json:"id"`
	Trigger         string     `json:"trigger"`
	Targets         []string   `json:"targets"`
	State           string     `json:"state"` // running, completed, failed
	Error           string     `json:"error,omitempty"`
	ShardsTotal     int        `json:"shards_total"`
	ShardsDone      int        `json:"shards_done"`
	AddressesTotal  int64      `json:"addresses_total"`
	AddressesProbed int64      `json:"addresses_probed"`
	Found           int        `json:"found"`
	Identified      int        `json:"identified"`
	CreatedAt       time.Time  `json:"created_at"`
	FinishedAt      *time.Time `json:"finished_at,omitempty"`
}

// StatusRequest is the body of amt.v1.admin.scan.status.
type StatusRequest struct {
	ID string `json:"id"`
}

// ListResponse is the reply of amt.v1.admin.scan.list.
type ListResponse struct {
	Targets []Target `json:"targets"`
	Scans   []Scan   `json:"scans"` // the most recent first
}

// shardMsg is one shard on the work queue.
type shardMsg struct {
	ScanID   string  `json:"scan_id"`
	Shard    string  `json:"shard"`
	Target   string  `json:"target"`
	Rate     float64 `json:"rate"`
	RMCPPort int     `json:"rmcp_port"`
	HTTPPort int     `json:"http_port"`
	TLSPort  int     `json:"tls_port"`
	TCPAll   bool    `json:"tcp_all"`
}

// Deps are a replica's connections.
type Deps struct {
	Pool *pgxpool.Pool
	NC   *nats.Conn
	JS   jetstream.JetStream
	Keys *secrets.Keyring
	Tel  telemetry.Providers
	Log  *slog.Logger
}

// Service is one discovery replica.
type Service struct {
	adminReady admin.ReadyCheck // the scan verbs' server, once Run started it

	cfg    Config
	d      Deps
	repo   *repo
	pub    *bus.Publisher
	global *rate.Limiter

	limMu    sync.Mutex
	limiters map[string]*targetLimiter // by scan id + target: one target's budget in this replica

	identSem chan struct{} // identifications in flight

	tracer trace.Tracer
	m      serviceMetrics
}

// serviceMetrics are discovery's own instruments (Prometheus names
// amtprov_discovery_*).
type serviceMetrics struct {
	shards    metric.Int64Counter     // by outcome: done, redelivered, retried, terminated
	addresses metric.Int64Counter     // addresses probed
	found     metric.Int64Counter     // devices found, by method
	packets   metric.Int64Counter     // pings and TCP connections sent
	shardDur  metric.Float64Histogram // seconds per shard sweep
}

func newMetrics(mp metric.MeterProvider) (serviceMetrics, error) {
	m := mp.Meter(scope)
	var sm serviceMetrics
	var err error
	if sm.shards, err = m.Int64Counter("amtprov.discovery.shards", metric.WithDescription("Shards handled, by outcome (done, redelivered, retried, terminated).")); err != nil {
		return sm, err
	}
	if sm.addresses, err = m.Int64Counter("amtprov.discovery.addresses", metric.WithDescription("Addresses probed.")); err != nil {
		return sm, err
	}
	if sm.found, err = m.Int64Counter("amtprov.discovery.found", metric.WithDescription("AMT devices found, by method (rmcp, http, wsman).")); err != nil {
		return sm, err
	}
	if sm.packets, err = m.Int64Counter("amtprov.discovery.packets", metric.WithDescription("Probe packets sent: RMCP pings and TCP connections.")); err != nil {
		return sm, err
	}
	sm.shardDur, err = m.Float64Histogram("amtprov.discovery.shard.duration", metric.WithUnit("s"),
		metric.WithDescription("Seconds to sweep one shard."), metric.WithExplicitBucketBoundaries(0.5, 1, 2, 5, 10, 20, 30, 60, 120))
	return sm, err
}

const scope = "github.com/amtprov/amtprov/services/discovery"

func (s *Service) countShard(ctx context.Context, outcome string) {
	s.m.shards.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

type targetLimiter struct {
	l    *rate.Limiter
	used time.Time
}

// New checks its dependencies; Run starts the work.
func New(cfg Config, d Deps) (*Service, error) {
	cfg.defaults()
	if d.Pool == nil || d.NC == nil || d.JS == nil || d.Keys == nil {
		return nil, errors.New("new discovery: database, NATS, JetStream and keyring are required")
	}
	if cfg.ShardBits < 16 || cfg.ShardBits > 32 {
		return nil, fmt.Errorf("new discovery: shard prefix /%d outside /16-/32", cfg.ShardBits)
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Tel.Tracer == nil {
		d.Tel.Tracer = tracenoop.NewTracerProvider()
	}
	if d.Tel.Meter == nil {
		d.Tel.Meter = metricnoop.NewMeterProvider()
	}
	m, err := newMetrics(d.Tel.Meter)
	if err != nil {
		return nil, fmt.Errorf("new discovery: metrics: %w", err)
	}
	return &Service{
		tracer: d.Tel.Tracer.Tracer(scope), m: m,
		cfg: cfg, d: d, repo: &repo{pool: d.Pool, keys: d.Keys},
		pub:      bus.NewPublisher(d.JS, "/discovery/"+cfg.Name, d.Tel),
		global:   rate.NewLimiter(rate.Limit(cfg.GlobalRate), max(1, int(cfg.GlobalRate/10))),
		limiters: map[string]*targetLimiter{},
		identSem: make(chan struct{}, max(1, cfg.IdentifyConcurrency)),
	}, nil
}

// Ready reports whether Run answers the scan admin verbs (for
// service.Lifecycle.Ready: /readyz waits for them too).
func (s *Service) Ready(ctx context.Context) error { return s.adminReady.Ready(ctx) }

// Run serves until ctx ends: the admin verbs, the shard workers, the
// scheduler, the verification of freshly provisioned devices and the
// outbox relay. It returns ctx's end as nil, or the first failure.
func (s *Service) Run(ctx context.Context) error {
	cons, err := s.ensureWork(ctx)
	if err != nil {
		return err
	}
	verify, err := bus.EnsureConsumer(ctx, s.d.JS, bus.ConsumerConfig{
		Durable: s.cfg.VerifyDurable, FilterSubjects: []string{events.SubjectProvisioning + ".succeeded.>"},
		AckWait: 30 * time.Second, MaxDeliver: 5,
	})
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	srv := admin.NewServer(s.d.NC, admin.ServerOptions{Queue: admin.QueueGroup("discovery"), Log: s.d.Log, Telemetry: s.d.Tel})
	admin.Handle(srv, admin.Subject(admin.AreaScan, VerbAdd), s.AddTarget)
	admin.Handle(srv, admin.Subject(admin.AreaScan, VerbList), func(ctx context.Context, _ struct{}) (ListResponse, error) { return s.List(ctx) })
	admin.Handle(srv, admin.Subject(admin.AreaScan, VerbRun), func(ctx context.Context, r RunRequest) (Scan, error) { return s.RunScan(ctx, r, "cli") })
	admin.Handle(srv, admin.Subject(admin.AreaScan, VerbStatus), func(ctx context.Context, r StatusRequest) (Scan, error) { return s.Status(ctx, r.ID) })
	s.adminReady.Set(srv)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4+s.cfg.ShardWorkers)
	goRun := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("discovery %s: %w", name, err)
				cancel()
			}
		}()
	}
	goRun("admin", srv.Run)
	goRun("outbox relay", outbox.NewRelay(s.d.Pool, s.pub, outbox.RelayConfig{
		Topics: []string{events.SubjectDeviceDiscovered, events.SubjectScanCompleted}, Log: s.d.Log, Telemetry: s.d.Tel}).Run)
	goRun("verify", func(ctx context.Context) error { return s.runVerify(ctx, verify) })
	if s.cfg.ScheduleEvery > 0 {
		goRun("scheduler", s.runScheduler)
	}
	for range s.cfg.ShardWorkers {
		goRun("shard worker", func(ctx context.Context) error { return s.runShards(ctx, cons) })
	}
	wg.Wait()
	close(errc)
	return <-errc
}

func (s *Service) ensureWork(ctx context.Context) (jetstream.Consumer, error) {
	if _, err := s.d.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: WorkStream, Description: "amtprov internal work queues (not part of the amt.v1 contract)",
		Subjects: []string{WorkSubjects}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
		Replicas: s.cfg.WorkReplicas, Duplicates: 2 * time.Minute, Discard: jetstream.DiscardOld, MaxMsgs: -1, MaxBytes: -1,
	}); err != nil {
		return nil, fmt.Errorf("discovery: ensure stream %s: %w", WorkStream, err)
	}
	cons, err := s.d.JS.CreateOrUpdateConsumer(ctx, WorkStream, jetstream.ConsumerConfig{
		Durable: s.cfg.ShardDurable, Name: s.cfg.ShardDurable, FilterSubject: ShardSubject,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: s.cfg.AckWait, MaxDeliver: s.cfg.MaxDeliver, MaxAckPending: 10000,
	})
	if err != nil {
		return nil, fmt.Errorf("discovery: ensure consumer %s: %w", s.cfg.ShardDurable, err)
	}
	return cons, nil
}

// AddTarget creates or updates a target (amtprov scan add).
func (s *Service) AddTarget(ctx context.Context, r AddTargetRequest) (Target, error) {
	p, err := parseBlock(r.CIDR)
	if err != nil {
		return Target{}, admin.Errorf(admin.CodeBadRequest, "%v", err)
	}
	var sched time.Duration
	if r.Schedule != "" {
		if sched, err = time.ParseDuration(r.Schedule); err != nil || sched < time.Minute {
			return Target{}, admin.Errorf(admin.CodeBadRequest, "schedule %q: want a duration of at least 1m (e.g. 6h)", truncate(r.Schedule, 32))
		}
	}
	t := Target{CIDR: p.String(), RateLimit: r.RateLimit, RMCPPort: r.RMCPPort, HTTPPort: r.HTTPPort, TLSPort: r.TLSPort, TCPAll: r.TCPAll, Enabled: !r.Disabled}
	if t.RateLimit == 0 {
		t.RateLimit = s.cfg.DefaultRate
	}
	for _, pp := range []*int{&t.RMCPPort, &t.HTTPPort, &t.TLSPort} {
		if *pp == 0 {
			continue
		}
		if *pp < 1 || *pp > 65535 {
			return Target{}, admin.Errorf(admin.CodeBadRequest, "port %d outside 1-65535", *pp)
		}
	}
	if t.RMCPPort == 0 {
		t.RMCPPort = sweep.DefaultRMCPPort
	}
	if t.HTTPPort == 0 {
		t.HTTPPort = sweep.DefaultHTTPPort
	}
	if t.TLSPort == 0 {
		t.TLSPort = sweep.DefaultTLSPort
	}
	if t.RateLimit < 1 || t.RateLimit > 1000000 {
		return Target{}, admin.Errorf(admin.CodeBadRequest, "rate limit %d outside 1-1000000 packets/s", t.RateLimit)
	}
	return s.repo.upsertTarget(ctx, t, sched)
}

// List returns the targets and the 20 most recent scans (amtprov scan list).
func (s *Service) List(ctx context.Context) (ListResponse, error) {
	ts, err := s.repo.targets(ctx)
	if err != nil {
		return ListResponse{}, err
	}
	sc, err := s.repo.scans(ctx, 20)
	if err != nil {
		return ListResponse{}, err
	}
	return ListResponse{Targets: nonNil(ts), Scans: nonNil(sc)}, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Status is one scan's progress (amtprov scan run --wait polls it).
func (s *Service) Status(ctx context.Context, id string) (Scan, error) {
	sc, err := s.repo.scan(ctx, id)
	if errors.Is(err, errScanNotFound) {
		return Scan{}, admin.Errorf(admin.CodeNotFound, "no scan %q", truncate(id, 64))
	}
	return sc, err
}

// pubWindow is how many shard messages are in flight at once.
const pubWindow = 1024

// maxCredentialRows bounds a credentials file.
const maxCredentialRows = 10000

// RunScan starts a scan of r.CIDRs (every enabled target when empty): it
// records the scan and its shards, then puts the shards on the work queue,
// and returns at once; replicas sweep the shards.
func (s *Service) RunScan(ctx context.Context, r RunRequest, trigger string) (Scan, error) {
	if len(r.Credentials) > maxCredentialRows {
		return Scan{}, admin.Errorf(admin.CodeBadRequest, "%d credentials rows: at most %d", len(r.Credentials), maxCredentialRows)
	}
	for i, c := range r.Credentials {
		if _, _, err := parseMatch(c.Match); err != nil {
			return Scan{}, admin.Errorf(admin.CodeBadRequest, "credentials row %d: %v", i+1, err)
		}
		if c.Username == "" || c.Password == "" || len(c.Username) > 256 || len(c.Password) > 256 {
			return Scan{}, admin.Errorf(admin.CodeBadRequest, "credentials row %d: username and password must be 1-256 bytes", i+1)
		}
	}
	var blocks []netip.Prefix
	if len(r.CIDRs) == 0 {
		ts, err := s.repo.targets(ctx)
		if err != nil {
			return Scan{}, err
		}
		for _, t := range ts {
			if t.Enabled {
				blocks = append(blocks, netip.MustParsePrefix(t.CIDR))
			}
		}
		if len(blocks) == 0 {
			return Scan{}, admin.Errorf(admin.CodeBadRequest, "no CIDR given and no enabled target: add one with `amtprov scan add CIDR`")
		}
	}
	for _, c := range r.CIDRs {
		p, err := parseBlock(c)
		if err != nil {
			return Scan{}, admin.Errorf(admin.CodeBadRequest, "%v", err)
		}
		blocks = append(blocks, p)
	}
	return s.startScan(ctx, blocks, r.Credentials, trigger)
}

// parseBlock reads an IPv4 CIDR (or one address) of at most a /8.
func parseBlock(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		a, aerr := netip.ParseAddr(strings.TrimSpace(s))
		if aerr != nil {
			return netip.Prefix{}, fmt.Errorf("block %q: want an IPv4 CIDR such as 10.1.0.0/16", truncate(s, 64))
		}
		p = netip.PrefixFrom(a, 32)
	}
	if !p.Addr().Is4() || p.Bits() < 8 {
		return netip.Prefix{}, fmt.Errorf("block %s: want IPv4, /8 or smaller", p)
	}
	return p.Masked(), nil
}

func (s *Service) startScan(ctx context.Context, blocks []netip.Prefix, creds []CredentialRow, trigger string) (Scan, error) {
	// Drop blocks inside another block of the same scan: every address once.
	slices.SortFunc(blocks, func(a, b netip.Prefix) int { return a.Bits() - b.Bits() })
	var uniq []netip.Prefix
	for _, b := range blocks {
		if !slices.ContainsFunc(uniq, func(u netip.Prefix) bool { return u.Overlaps(b) }) {
			uniq = append(uniq, b)
		}
	}
	id := newScanID()
	var shards []shardPlan
	for _, b := range uniq {
		t, ok, err := s.repo.targetFor(ctx, b)
		if err != nil {
			return Scan{}, err
		}
		msg := shardMsg{ScanID: id, Target: b.String(), Rate: float64(s.cfg.DefaultRate),
			RMCPPort: s.cfg.Sweep.RMCPPort, HTTPPort: s.cfg.Sweep.HTTPPort, TLSPort: s.cfg.Sweep.TLSPort}
		if ok {
			msg.Rate, msg.RMCPPort, msg.HTTPPort, msg.TLSPort, msg.TCPAll = float64(t.RateLimit), t.RMCPPort, t.HTTPPort, t.TLSPort, t.TCPAll
		}
		for _, sh := range split(b, s.cfg.ShardBits) {
			m := msg
			m.Shard = sh.String()
			shards = append(shards, shardPlan{msg: m, addresses: len(sweep.Addresses(sh, b))})
		}
	}
	if err := s.repo.createScan(ctx, id, trigger, uniq, shards, creds); err != nil {
		return Scan{}, err
	}
	// Publish in windows of pubWindow so a /8 (65,536 shards) never
	// exceeds the client's limit of outstanding asynchronous publishes.
	var pubErr error
	for start := 0; start < len(shards) && pubErr == nil; start += pubWindow {
		window := shards[start:min(start+pubWindow, len(shards))]
		futures := make([]jetstream.PubAckFuture, 0, len(window))
		for _, sh := range window {
			data, err := json.Marshal(sh.msg)
			if err != nil {
				pubErr = err
				break
			}
			f, err := s.d.JS.PublishAsync(ShardSubject, data, jetstream.WithMsgID(id+"/"+sh.msg.Shard))
			if err != nil {
				pubErr = err
				break
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				pubErr = cmp(pubErr, err)
			case <-ctx.Done():
				pubErr = cmp(pubErr, ctx.Err())
			}
		}
	}
	if pubErr != nil {
		_ = s.repo.failScan(context.WithoutCancel(ctx), id, "queueing shards failed")
		return Scan{}, fmt.Errorf("start scan %s: queue shards: %w", id, pubErr)
	}
	s.d.Log.Info("scan started", "scan", id, "trigger", trigger, "blocks", len(uniq), "shards", len(shards))
	return s.repo.scan(ctx, id)
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// split cuts b into blocks of prefix length bits (b itself when smaller).
func split(b netip.Prefix, bits int) []netip.Prefix {
	if b.Bits() >= bits {
		return []netip.Prefix{b}
	}
	n := 1 << (bits - b.Bits())
	out := make([]netip.Prefix, 0, n)
	step := uint32(1) << (32 - bits)
	a4 := b.Addr().As4()
	base := uint32(a4[0])<<24 | uint32(a4[1])<<16 | uint32(a4[2])<<8 | uint32(a4[3])
	for i := range n {
		v := base + uint32(i)*step
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits))
	}
	return out
}

func newScanID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "scan-" + time.Now().UTC().Format("20060102t150405") + "-" + hex.EncodeToString(b[:])
}

// limiterFor is the budget shared by this replica's shards of one target
// of one scan; idle ones are dropped after ten minutes.
func (s *Service) limiterFor(m shardMsg) *rate.Limiter {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	now := time.Now()
	for k, l := range s.limiters {
		if now.Sub(l.used) > 10*time.Minute {
			delete(s.limiters, k)
		}
	}
	key := m.ScanID + "|" + m.Target
	l, ok := s.limiters[key]
	if !ok {
		l = &targetLimiter{l: rate.NewLimiter(rate.Limit(m.Rate), max(1, int(m.Rate/10)))}
		s.limiters[key] = l
	}
	l.used = now
	return l.l
}

// runShards leases shards one at a time until ctx ends.
func (s *Service) runShards(ctx context.Context, cons jetstream.Consumer) error {
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				return fmt.Errorf("fetch shard: %w", err)
			}
			if !sleepCtx(ctx, 200*time.Millisecond) {
				return nil
			}
			continue
		}
		for msg := range batch.Messages() {
			s.handleShard(ctx, msg)
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// handleShard sweeps one leased shard, keeping the lease alive with
// InProgress heartbeats, records it and acknowledges it. A malformed
// message is terminated; a failure is retried later on any replica
// (NakWithDelay); on shutdown the shard is handed back at once.
func (s *Service) handleShard(ctx context.Context, msg jetstream.Msg) {
	var m shardMsg
	if err := json.Unmarshal(msg.Data(), &m); err != nil {
		s.d.Log.Error("malformed shard message terminated", "err", err)
		s.countShard(ctx, "terminated")
		_ = msg.Term()
		return
	}
	ctx, span := s.tracer.Start(ctx, "discovery.shard", trace.WithAttributes(
		attribute.String("amtprov.scan.id", m.ScanID), attribute.String("amtprov.scan.shard", m.Shard)))
	defer span.End()
	log := s.d.Log.With("scan", m.ScanID, "shard", m.Shard)
	shard, err1 := netip.ParsePrefix(m.Shard)
	target, err2 := netip.ParsePrefix(m.Target)
	if err := errors.Join(err1, err2); err != nil || m.Rate <= 0 {
		log.Error("malformed shard message terminated", "err", err, "rate", m.Rate)
		s.countShard(ctx, "terminated")
		_ = msg.Term()
		return
	}
	deliveries := 1
	if md, err := msg.Metadata(); err == nil {
		deliveries = int(md.NumDelivered)
	}
	hbCtx, stopHB := context.WithCancel(ctx)
	var hb sync.WaitGroup
	hb.Add(1)
	go func() {
		defer hb.Done()
		t := time.NewTicker(max(s.cfg.AckWait/3, 50*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-hbCtx.Done():
				return
			}
		}
	}()
	defer func() { stopHB(); hb.Wait() }()

	id, err := s.repo.identifierFor(ctx, m.ScanID, shard)
	if err != nil {
		s.retry(ctx, msg, m, deliveries, log, err)
		return
	}
	id.tlsPort, id.httpPort, id.tracer = m.TLSPort, m.HTTPPort, s.d.Tel.Tracer
	id.timeout, id.sem = s.cfg.WSManTimeout, s.identSem
	cfg := s.cfg.Sweep
	cfg.RMCPPort, cfg.HTTPPort, cfg.TLSPort, cfg.TCPAll = m.RMCPPort, m.HTTPPort, m.TLSPort, m.TCPAll
	cfg.Shared, cfg.Global = s.limiterFor(m), s.global
	began := time.Now()
	res, err := sweep.Sweep(ctx, cfg, sweep.Addresses(shard, target), id)
	if err != nil {
		span.RecordError(err)
		s.retry(ctx, msg, m, deliveries, log, err)
		return
	}
	s.m.shardDur.Record(ctx, time.Since(began).Seconds())
	s.m.packets.Add(ctx, res.Stats.Pings+res.Stats.Connects)
	span.SetAttributes(attribute.Int("amtprov.scan.addresses", res.Stats.Addresses), attribute.Int("amtprov.scan.found", len(res.Found)),
		attribute.Int("amtprov.scan.identified", res.Stats.Identified))
	for _, f := range res.Found {
		if f.IdentifyError != "" {
			// wsman errors never carry a credential (libs/wsman doc).
			log.Warn("device not identified", "addr", f.Addr.String(), "err", f.IdentifyError)
		}
	}
	if res.Stats.BadPongs > 0 || res.Stats.BadBanners > 0 {
		log.Info("answers that were not AMT", "bad_pongs", res.Stats.BadPongs, "bad_banners", res.Stats.BadBanners)
	}
	done, completed, err := s.repo.finishShard(ctx, shardOutcome{msg: m, res: res, worker: s.cfg.Name, deliveries: deliveries, source: "/discovery/" + s.cfg.Name, id: id})
	if err != nil {
		s.retry(ctx, msg, m, deliveries, log, err)
		return
	}
	if err := msg.DoubleAck(ctx); err != nil {
		log.Warn("shard ack failed; it will be redelivered and counted once", "err", err)
	}
	if !done {
		log.Info("shard was recorded already (redelivery)", "deliveries", deliveries)
		s.countShard(ctx, "redelivered")
	} else {
		s.countShard(ctx, "done")
		s.m.addresses.Add(ctx, int64(res.Stats.Addresses))
		for _, f := range res.Found {
			s.m.found.Add(ctx, 1, metric.WithAttributes(attribute.String("method", f.Method)))
		}
	}
	if completed != nil {
		log.Info("scan completed", "found", completed.Found, "identified", completed.Identified, "stale", len(completed.Stale), "addresses", completed.Addresses)
	}
}

func (s *Service) retry(ctx context.Context, msg jetstream.Msg, m shardMsg, deliveries int, log *slog.Logger, err error) {
	if ctx.Err() != nil {
		_ = msg.NakWithDelay(0) // shutting down: another replica takes it now
		return
	}
	if s.cfg.MaxDeliver > 0 && deliveries >= s.cfg.MaxDeliver {
		// JetStream will not deliver it again: the scan cannot complete.
		log.Error("shard failed on its last delivery; scan marked failed", "deliveries", deliveries, "err", err)
		s.countShard(ctx, "terminated")
		if ferr := s.repo.failScan(ctx, m.ScanID, fmt.Sprintf("shard %s failed %d times; see the discovery log", m.Shard, deliveries)); ferr != nil {
			log.Error("mark scan failed", "err", ferr)
		}
		_ = msg.Term()
		return
	}
	log.Warn("shard failed; retried later", "err", err, "deliveries", deliveries)
	s.countShard(ctx, "retried")
	_ = msg.NakWithDelay(5 * time.Second)
}

// runScheduler starts a scan of the targets whose schedule is due.
func (s *Service) runScheduler(ctx context.Context) error {
	t := time.NewTicker(s.cfg.ScheduleEvery)
	defer t.Stop()
	for {
		due, err := s.repo.claimDue(ctx)
		if err != nil && ctx.Err() == nil {
			s.d.Log.Warn("scheduler", "err", err)
		}
		if len(due) > 0 {
			blocks := make([]netip.Prefix, 0, len(due))
			for _, d := range due {
				blocks = append(blocks, netip.MustParsePrefix(d.CIDR))
			}
			if _, err := s.startScan(ctx, blocks, nil, "schedule"); err != nil && ctx.Err() == nil {
				s.d.Log.Warn("scheduled scan did not start", "err", err)
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil
		}
	}
}

// runVerify scans a device's last known address after it is provisioned
// (its management interface opens fully only then): discovery confirms it
// answers where it was configured, identified over pinned TLS.
func (s *Service) runVerify(ctx context.Context, cons jetstream.Consumer) error {
	sub, err := bus.Consume(ctx, cons, func(ctx context.Context, req any) (any, error) {
		env, ok := req.(events.Envelope)
		if !ok {
			return nil, fmt.Errorf("%w: request is %T", events.ErrInvalid, req)
		}
		p, err := env.Decode()
		if err != nil {
			return nil, err
		}
		ev, ok := p.(*events.Provisioning)
		if !ok || ev.Event != events.ProvisioningSucceeded {
			return nil, nil
		}
		u, err := parseUUID(ev.UUID)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", events.ErrInvalid, err)
		}
		a, ok, err := s.repo.locationOf(ctx, u)
		if err != nil || !ok {
			return nil, err // no known address: nothing to verify
		}
		_, err = s.startScan(ctx, []netip.Prefix{netip.PrefixFrom(a, 32)}, nil, "provisioned")
		return nil, err
	}, bus.ConsumeOptions{Workers: 4, Logger: s.d.Log, Tel: s.d.Tel, Name: s.cfg.VerifyDurable})
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-sub.Done():
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = sub.Stop(stopCtx)
	if ctx.Err() == nil {
		return sub.Err()
	}
	return nil
}
