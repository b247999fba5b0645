package listener

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/events"
)

// Publisher puts an event on the bus and returns once it is stored.
// *bus.Publisher is the one implementation.
type Publisher interface {
	Publish(ctx context.Context, payload events.Payload, id string, opts ...bus.PublishOption) error
}

// Config tunes the listener. Zero values take the defaults in parentheses.
type Config struct {
	Addr           string        // listen address (":9971")
	Name           string        // listener id carried in events (host name)
	ReadTimeout    time.Duration // whole-hello deadline per connection (10s)
	MaxBytes       int           // bytes accepted per connection (16 KiB)
	MaxConns       int           // concurrent connections (4096)
	PerIPRate      float64       // hellos per second per source IP (5)
	PerIPBurst     int           // bucket size per source IP (20)
	RejectLogRate  float64       // rejection log lines per second (5)
	PublishTimeout time.Duration // bound on one publish, retries included (5s)
}

func (c *Config) defaults() {
	if c.Addr == "" {
		c.Addr = ":9971"
	}
	if c.Name == "" {
		c.Name, _ = os.Hostname()
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 16 << 10
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 4096
	}
	if c.PerIPRate <= 0 {
		c.PerIPRate = 5
	}
	if c.PerIPBurst <= 0 {
		c.PerIPBurst = 20
	}
	if c.RejectLogRate <= 0 {
		c.RejectLogRate = 5
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
}

// Rejection reasons that are not decoding errors; those come from
// amt.RejectReason.
const (
	ReasonOversized   = "oversized"    // more than MaxBytes on one connection
	ReasonTimeout     = "timeout"      // no complete hello before the deadline
	ReasonRateLimited = "rate_limited" // source IP over its token bucket
	ReasonOverloaded  = "overloaded"   // concurrent-connection cap reached
	ReasonEmpty       = "empty"        // connection closed without a byte
	ReasonPublish     = "publish_failed"
)

// Listener accepts hellos. Create it with New.
type Listener struct {
	cfg    Config
	pub    Publisher
	log    *slog.Logger
	tracer trace.Tracer

	rejected metric.Int64Counter
	latency  metric.Float64Histogram

	deadline    atomic.Pointer[sharedDeadline] // publishDeadline's current window
	reasonOpts  map[string]metric.AddOption    // per reason, built once in New
	helloPrefix string                         // subject of a hello without its key

	sem      chan struct{}
	conns    chan net.Conn // to idle workers (dispatch)
	workers  atomic.Int64
	limiters *ipLimiters
	logLimit *rate.Limiter
	bufs     sync.Pool

	// Counted here and read by the metrics callback and the status page: an
	// atomic add is a fraction of a synchronous instrument's Add, which was
	// paid three to four times per hello (docs/benchmarks.md).
	nReceived, nPublished, nRejected, nActive atomic.Int64
	started                                   time.Time

	mu sync.Mutex
	ln net.Listener
}

// Options carries the telemetry a Listener reports to.
type Options struct {
	Tracer trace.TracerProvider
	Meter  metric.MeterProvider
	Logger *slog.Logger
}

// New builds a listener; Serve or ListenAndServe starts it.
func New(cfg Config, pub Publisher, opts Options) (*Listener, error) {
	cfg.defaults()
	if pub == nil || opts.Tracer == nil || opts.Meter == nil || opts.Logger == nil {
		return nil, errors.New("listener: publisher, tracer, meter and logger are required")
	}
	m := opts.Meter.Meter("github.com/amtprov/amtprov/services/hello-listener")
	l := &Listener{
		cfg:      cfg,
		pub:      pub,
		log:      opts.Logger,
		tracer:   opts.Tracer.Tracer("github.com/amtprov/amtprov/services/hello-listener"),
		sem:      make(chan struct{}, cfg.MaxConns),
		conns:    make(chan net.Conn),
		limiters: newIPLimiters(rate.Limit(cfg.PerIPRate), cfg.PerIPBurst),
		logLimit: rate.NewLimiter(rate.Limit(cfg.RejectLogRate), int(cfg.RejectLogRate)+1),
		started:  time.Now(),
	}
	k, _ := events.KindOf(events.TypeDeviceHello)
	l.helloPrefix = k.Prefix + "."
	l.bufs.New = func() any { b := make([]byte, min(initialReadBuf, cfg.MaxBytes+1)); return &b }
	var err error
	if l.rejected, err = m.Int64Counter("hellos_rejected", metric.WithDescription("Hellos dropped before the bus, by reason.")); err != nil {
		return nil, err
	}
	received, err := m.Int64ObservableCounter("hellos_received", metric.WithDescription("Connections that delivered bytes to the hello port."))
	if err != nil {
		return nil, err
	}
	published, err := m.Int64ObservableCounter("hellos_published", metric.WithDescription("Hellos stored in JetStream."))
	if err != nil {
		return nil, err
	}
	active, err := m.Int64ObservableUpDownCounter("hello_connections_active", metric.WithDescription("Open hello connections."))
	if err != nil {
		return nil, err
	}
	if _, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(received, l.nReceived.Load())
		o.ObserveInt64(published, l.nPublished.Load())
		o.ObserveInt64(active, l.nActive.Load())
		return nil
	}, received, published, active); err != nil {
		return nil, err
	}
	if l.latency, err = m.Float64Histogram("hello_ingest_seconds", metric.WithUnit("s"),
		metric.WithDescription("From accept to the JetStream ack."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)); err != nil {
		return nil, err
	}
	// Pre-register every reason at zero so that dashboards and alerts see
	// the series before the first rejection.
	ctx := context.Background()
	l.reasonOpts = make(map[string]metric.AddOption)
	for _, r := range append(amt.RejectReasons(), ReasonOversized, ReasonTimeout, ReasonRateLimited, ReasonOverloaded, ReasonEmpty, ReasonPublish) {
		l.reasonOpts[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r)))
		l.rejected.Add(ctx, 0, l.reasonOpts[r])
	}
	return l, nil
}

// Listen binds cfg.Addr. The caller passes the listener to Serve.
func (l *Listener) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", l.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("hello listener: listen %s: %w", l.cfg.Addr, err)
	}
	return ln, nil
}

// Serve accepts connections on ln until ctx ends, then stops accepting and
// waits for the connections in flight (their hellos are still published).
func (l *Listener) Serve(ctx context.Context, ln net.Listener) error {
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	var wg sync.WaitGroup
	quit := make(chan struct{}) // closed when Serve returns: idle workers exit
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-sweep.C:
				l.limiters.sweep(time.Now())
			}
		}
	}()
	var tempDelay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				close(quit)
				wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				// Out of file descriptors or a transient error: back off
				// like net/http does instead of spinning.
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				l.log.Warn("accept failed, backing off", "err", err, "delay", tempDelay)
				select {
				case <-time.After(tempDelay):
				case <-ctx.Done():
				}
				continue
			}
			close(quit)
			wg.Wait()
			return fmt.Errorf("hello listener: accept: %w", err)
		}
		tempDelay = 0
		select {
		case l.sem <- struct{}{}:
		default:
			l.reject(ctx, conn.RemoteAddr(), ReasonOverloaded, nil)
			_ = conn.Close()
			continue
		}
		l.dispatch(context.WithoutCancel(ctx), &wg, quit, conn)
	}
}

// workerIdle is how long a connection worker waits for the next connection
// before it exits.
const workerIdle = 5 * time.Second

// dispatch hands conn to an idle worker, or starts one. Workers outlive
// their connection: a fresh goroutine per hello grew its stack during the
// publish every time (≈ 5 µs per hello in the ingest profile,
// docs/benchmarks.md), while a reused worker keeps its grown stack. The
// workers are bounded by MaxConns, as the connections are (l.sem).
func (l *Listener) dispatch(ctx context.Context, wg *sync.WaitGroup, quit <-chan struct{}, conn net.Conn) {
	select {
	case l.conns <- conn:
		return
	default:
	}
	for l.workers.Add(1) > int64(l.cfg.MaxConns) {
		// Every worker slot is taken but a connection slot was free: a
		// worker is between connections; wait for it, unless it exits
		// idle meanwhile, which frees a slot for a new one.
		l.workers.Add(-1)
		select {
		case l.conns <- conn:
			return
		case <-time.After(time.Millisecond):
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer l.workers.Add(-1)
		idle := time.NewTimer(workerIdle)
		defer idle.Stop()
		for {
			l.handle(ctx, conn)
			idle.Reset(workerIdle)
			select {
			case conn = <-l.conns:
			case <-idle.C:
				return
			case <-quit:
				return
			}
		}
	}()
}

// Addr is the bound address once Serve runs.
func (l *Listener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

func (l *Listener) handle(ctx context.Context, conn net.Conn) {
	start := time.Now()
	l.nActive.Add(1)
	defer l.nActive.Add(-1)
	// The connection's slot (taken in Serve) is held until its hello is
	// stored or refused, and given back before the active count drops.
	defer func() { <-l.sem }()
	defer conn.Close()

	var remote netip.AddrPort
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		remote = ta.AddrPort()
	} else {
		remote, _ = netip.ParseAddrPort(conn.RemoteAddr().String())
	}
	if !l.limiters.allow(remote.Addr(), start) {
		l.reject(ctx, conn.RemoteAddr(), ReasonRateLimited, nil)
		return
	}
	_ = conn.SetDeadline(start.Add(l.cfg.ReadTimeout))

	bp := l.bufs.Get().(*[]byte)
	defer l.bufs.Put(bp)
	n, buf, reason, err := l.readHello(conn, *bp)
	if n > 0 {
		l.nReceived.Add(1)
	}
	if reason == "http" {
		l.serveStatus(conn, buf[:n])
		return
	}
	// The firmware expects no answer (PROTOCOL.md §4.1): release the socket
	// before the bus round trip.
	_ = conn.Close()
	if reason != "" {
		l.reject(ctx, conn.RemoteAddr(), reason, err)
		return
	}
	hello, err := amt.DecodeHello(buf[:n])
	if err != nil {
		l.reject(ctx, conn.RemoteAddr(), amt.RejectReason(err), err)
		return
	}
	l.publish(ctx, hello, remote, start)
}

// initialReadBuf is the pooled read buffer's size: a hello is at most a few
// hundred bytes (PROTOCOL.md §4), so the buffer grows towards MaxBytes+1
// only for the rare longer input instead of every connection taking a
// 16 KiB buffer.
const initialReadBuf = 2048

// readHello reads into buf (growing it up to MaxBytes+1) until the hello is
// complete, the peer closes, the cap is exceeded or the deadline passes. It
// returns the bytes read, the buffer holding them and, when the packet must
// be dropped without decoding, the reason.
func (l *Listener) readHello(conn net.Conn, buf []byte) (int, []byte, string, error) {
	n := 0
	for {
		if n == len(buf) {
			grown := make([]byte, min(2*len(buf), l.cfg.MaxBytes+1))
			copy(grown, buf)
			buf = grown
		}
		m, err := conn.Read(buf[n:])
		n += m
		if n >= 4 && bytes.HasPrefix(buf[:n], []byte("GET ")) {
			return n, buf, "http", nil
		}
		if n > l.cfg.MaxBytes {
			return n, buf, ReasonOversized, fmt.Errorf("more than %d bytes", l.cfg.MaxBytes)
		}
		if size, ok, cerr := amt.Complete(buf[:n]); cerr != nil {
			// Already impossible: decode to get the precise typed error.
			return n, buf, "", nil
		} else if ok && size == n {
			// Firmware closes right after the hello; acting now saves a
			// round trip. Bytes after it are trailing garbage, caught by the
			// decoder if they arrived in the same read.
			return n, buf, "", nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if n == 0 {
					return 0, buf, ReasonEmpty, nil
				}
				return n, buf, "", nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return n, buf, ReasonTimeout, fmt.Errorf("no complete hello within %s (%d bytes)", l.cfg.ReadTimeout, n)
			}
			// A reset after some bytes: decode what arrived.
			if n == 0 {
				return 0, buf, ReasonEmpty, err
			}
			return n, buf, "", nil
		}
	}
}

func (l *Listener) publish(ctx context.Context, h amt.Hello, remote netip.AddrPort, start time.Time) {
	uuid := h.UUID.String()
	ip := remote.Addr().Unmap().String()
	id := events.HelloID(uuid, h.RetryCount)
	// The span stands for the publish too (bus.InCallerSpan), so it carries
	// the send's attributes from its start: set later they cost a copy.
	var attrs [10]attribute.KeyValue
	// The publish deadline counts from now, not from the accept: a slow
	// sender must not eat into it.
	ctx, span := l.tracer.Start(l.publishDeadline(ctx, time.Now()), "hello.receive",
		trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(start),
		trace.WithAttributes(bus.SendAttributes(append(attrs[:0],
			attribute.String("amt.device.uuid", uuid),
			attribute.String("net.peer.ip", ip),
			attribute.Int("amt.hello.interface_version", int(h.InterfaceVersion)),
			attribute.Int64("amt.hello.retry_count", int64(h.RetryCount)),
			attribute.Int("amt.hello.root_hashes", len(h.RootHashes)),
		), l.helloPrefix+uuid, id, events.TypeDeviceHello)...))
	defer span.End()

	ev := &events.DeviceHello{
		UUID:                uuid,
		SourceIP:            ip,
		SourcePort:          int(remote.Port()),
		InterfaceVersion:    int(h.InterfaceVersion),
		AdminCredentialsSet: h.AdminCredentialsSet,
		RetryCount:          h.RetryCount,
		PID:                 h.PID,
		RootHashes:          make([]events.RootHash, len(h.RootHashes)),
		ReceivedAt:          start.UTC(),
		Listener:            l.cfg.Name,
	}
	for i, rh := range h.RootHashes {
		ev.RootHashes[i] = events.RootHash{Alg: rh.Alg.String(), Hex: rh.Hex()}
	}
	if err := l.pub.Publish(ctx, ev, id, bus.InCallerSpan()); err != nil {
		// The publisher recorded the error on the span (InCallerSpan).
		// The firmware sends the hello again on its schedule (PROTOCOL.md §3),
		// so a bus outage delays the device; it does not lose it.
		l.reject(ctx, netAddr(remote), ReasonPublish, err)
		return
	}
	l.nPublished.Add(1)
	l.latency.Record(ctx, time.Since(start).Seconds())
}

// deadlineWindow is how long hellos share one publish deadline.
const deadlineWindow = 50 * time.Millisecond

// sharedDeadline is a context ending PublishTimeout after the start of its
// window, used by every hello that starts before until.
type sharedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc // not called early: the deadline releases it
	until  time.Time
}

// publishDeadline returns a context of base that ends PublishTimeout (up to
// deadlineWindow more) after now. The hellos of one window share it: a
// context and timer per hello were ≈ 3 µs of its publish
// (docs/benchmarks.md), and nothing cancels a hello's publish early.
func (l *Listener) publishDeadline(base context.Context, now time.Time) context.Context {
	if d := l.deadline.Load(); d != nil && now.Before(d.until) {
		return d.ctx
	}
	d := &sharedDeadline{until: now.Add(deadlineWindow)}
	d.ctx, d.cancel = context.WithDeadline(base, d.until.Add(l.cfg.PublishTimeout))
	l.deadline.Store(d)
	return d.ctx
}

func (l *Listener) reject(ctx context.Context, from net.Addr, reason string, err error) {
	opt, ok := l.reasonOpts[reason]
	if !ok {
		opt = metric.WithAttributes(attribute.String("reason", reason))
	}
	l.rejected.Add(ctx, 1, opt)
	l.nRejected.Add(1)
	if l.logLimit.Allow() {
		args := []any{"reason", reason, "from", from.String()}
		if err != nil {
			args = append(args, "err", err.Error())
		}
		l.log.Warn("hello rejected", args...)
	}
}

func (l *Listener) serveStatus(conn net.Conn, head []byte) {
	// Read the rest of the request head (bounded by the same cap and
	// deadline) so that the client sees a clean response, not a reset.
	buf := make([]byte, 1024)
	for !bytes.Contains(head, []byte("\r\n\r\n")) && len(head) < l.cfg.MaxBytes {
		n, err := conn.Read(buf)
		head = append(head, buf[:n]...)
		if err != nil {
			break
		}
	}
	body := fmt.Sprintf("amtprov hello listener %s\nup since %s\nhellos received %d\npublished %d\nrejected %d\n",
		l.cfg.Name, l.started.UTC().Format(time.RFC3339), l.nReceived.Load(), l.nPublished.Load(), l.nRejected.Load())
	_, _ = fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

type addrPort netip.AddrPort

func (a addrPort) Network() string { return "tcp" }
func (a addrPort) String() string  { return netip.AddrPort(a).String() }

func netAddr(a netip.AddrPort) net.Addr { return addrPort(a) }
