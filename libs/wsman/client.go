package wsman

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Defaults of Config.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultDialTimeout      = 10 * time.Second
	DefaultMaxResponseBytes = 4 << 20
	// idleTimeout closes kept-alive connections before firmware does
	// (MeshCentral uses a 6 s socket idle timeout toward AMT, §12).
	idleTimeout = 5 * time.Second
	// maxPulls and maxItems bound an enumeration against a device that
	// never says EndOfSequence.
	maxPulls = 256
	maxItems = 16384
	// maxErrorBody is how much of a non-SOAP error body goes into HTTPError.
	maxErrorBody = 256
	// closeWait bounds how long closing a connection waits for the device
	// to close its side (see sessionConn); maxCloseDrain bounds what is
	// read meanwhile.
	closeWait     = time.Second
	maxCloseDrain = 64 << 10
	// closeGrace is how long after a connection is closed on both sides
	// the next one may open: firmware may free its session slot only after
	// its socket is gone. (amtsim used to count a session until after its
	// close bookkeeping, which this margin covered; since it counts the
	// session closed before its FIN, the margin is kept for real devices.)
	closeGrace = 50 * time.Millisecond
)

// Config describes one device endpoint.
type Config struct {
	// Address is "ip:port": 16993 with TLS, 16992 without (§1).
	Address string
	// TLS, when set, makes the client speak HTTPS. Build it with
	// SetupTLSConfig (remote configuration: provisioning chain as client
	// certificate, device certificate captured) or PinnedTLSConfig (after
	// commit: the device certificate's SHA-256 must match). nil: plain HTTP.
	TLS *tls.Config
	// Username and Password for HTTP digest (§8.3); used only when the
	// device challenges. They never appear in errors, logs or spans.
	Username string
	Password string
	// Timeout bounds each call (a context deadline per call, including any
	// digest round trip and reading the body). Default 30 s.
	Timeout time.Duration
	// DialTimeout bounds the TCP connect. Default 10 s.
	DialTimeout time.Duration
	// MaxResponseBytes bounds a response body (default 4 MiB); larger is
	// ErrResponseTooLarge.
	MaxResponseBytes int64
	// Tracer makes one client span per call (nil: no spans).
	Tracer trace.TracerProvider
}

// Client talks WS-Management to one device. It is safe for concurrent
// use. Close releases its connection.
//
// A Client holds at most one connection to its device at a time, and opens
// the next only once the device has closed the previous one: firmware
// serves one session at a time (MeshCentral keeps one request in flight,
// PROTOCOL.md §12), and AMT closes the connection after every digest
// challenge (§8.3 "Connection: close"), so the authenticated retry must not
// reach the device while the challenged connection still counts there.
// Closing a connection therefore ends our side (TLS close_notify, TCP FIN)
// and waits, at most a second, for the device's FIN; the next connection
// opens closeGrace (50 ms) after that. Calls from several goroutines queue
// for the one connection.
//
// With digest credentials, calls on one Client also run one at a time from
// the first request to the last response of each call: a digest nonce
// count must reach the device in increasing order (AMT, like amtsim,
// refuses a lower count as a replay).
type Client struct {
	cfg      Config
	url      string
	host     string
	port     int
	tlsConf  *tls.Config
	http     *http.Client
	tr       *http.Transport
	auth     *digestAuth
	serial   chan struct{} // one slot: serialises digest-authenticated calls
	session  chan struct{} // one slot: held from dial until the device closed the connection
	closedMu sync.Mutex
	closedAt time.Time // when the last connection was closed on both sides
	tracer   trace.Tracer
	msgID    atomic.Uint64
	maxBytes int64
}

// New checks cfg and returns a client; it does not connect.
func New(cfg Config) (*Client, error) {
	host, portStr, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("new wsman client: address %q: %w: %w", cfg.Address, ErrInvalidArgument, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 || host == "" {
		return nil, fmt.Errorf("new wsman client: address %q: want host:port: %w", cfg.Address, ErrInvalidArgument)
	}
	if cfg.Timeout < 0 || cfg.DialTimeout < 0 || cfg.MaxResponseBytes < 0 {
		return nil, fmt.Errorf("new wsman client for %s: negative timeout or size limit: %w", cfg.Address, ErrInvalidArgument)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	tp := cfg.Tracer
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	c := &Client{
		cfg:      cfg,
		host:     host,
		port:     port,
		auth:     &digestAuth{user: cfg.Username, pass: cfg.Password},
		tracer:   tp.Tracer("github.com/amtprov/amtprov/libs/wsman"),
		maxBytes: cfg.MaxResponseBytes,
		session:  make(chan struct{}, 1),
	}
	if cfg.Username != "" {
		c.serial = make(chan struct{}, 1)
	}
	c.tr = &http.Transport{
		DialContext:            c.dial,
		MaxConnsPerHost:        1,
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        idleTimeout,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
		// HTTP/1.1 only: AMT speaks nothing else.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
		c.tlsConf = cfg.TLS.Clone()
		if len(c.tlsConf.NextProtos) == 0 {
			c.tlsConf.NextProtos = []string{"http/1.1"}
		}
		if c.tlsConf.ServerName == "" && !c.tlsConf.InsecureSkipVerify {
			c.tlsConf.ServerName = host
		}
		if c.tlsConf.ClientSessionCache == nil {
			// The client's next connection (after a digest challenge, which
			// AMT answers with "Connection: close", §8.3) resumes the TLS
			// session instead of a full handshake when the device offers
			// it. VerifyConnection (the pin, the setup-mode check) still
			// runs on a resumed session, with the certificates of the
			// session's full handshake. One client's sessions only.
			c.tlsConf.ClientSessionCache = tls.NewLRUClientSessionCache(2)
		}
		c.tr.DialTLSContext = c.dialTLS
	}
	c.url = (&url.URL{Scheme: scheme, Host: cfg.Address, Path: "/wsman"}).String()
	c.http = &http.Client{
		Transport: c.tr,
		// A redirect from /wsman is not WS-Man; show it to the caller.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Address is the device endpoint.
func (c *Client) Address() string { return c.cfg.Address }

// Close closes the idle connection and returns once the device has closed
// its side too (at most about a second) and closeGrace has passed, so that
// a connection another Client opens next is the device's only session.
// In-flight calls finish; the client stays usable (a later call dials
// again).
func (c *Client) Close() {
	c.tr.CloseIdleConnections()
	if d := c.graceLeft(); d > 0 {
		time.Sleep(d) // at most closeGrace: pacing toward the device, not waiting for a condition
	}
}

// graceLeft is how long until closeGrace has passed since the last close.
func (c *Client) graceLeft() time.Duration {
	c.closedMu.Lock()
	defer c.closedMu.Unlock()
	if c.closedAt.IsZero() {
		return 0
	}
	return time.Until(c.closedAt.Add(closeGrace))
}

// dial opens the client's one connection (plain HTTP; dialTLS adds the
// handshake), waiting until the previous one is closed on both sides.
func (c *Client) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	raw, err := c.dialRaw(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &sessionConn{Conn: raw, raw: raw, client: c}, nil
}

// dialRaw takes the session slot and connects; on error the slot is free.
func (c *Client) dialRaw(ctx context.Context, network, addr string) (net.Conn, error) {
	select {
	case c.session <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("dial %s: waiting for the previous connection to close: %w: %w", addr, ErrUnreachable, ctx.Err())
	}
	if wait := c.graceLeft(); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			c.releaseSession()
			return nil, fmt.Errorf("dial %s: %w: %w", addr, ErrUnreachable, ctx.Err())
		}
	}
	d := net.Dialer{Timeout: c.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		c.releaseSession()
		return nil, fmt.Errorf("dial %s: %w: %w", addr, ErrUnreachable, err)
	}
	return conn, nil
}

func (c *Client) releaseSession() { <-c.session }

// sessionEnded gives the slot back after a connection the device accepted
// was closed on both sides; the next dial waits closeGrace from now.
func (c *Client) sessionEnded() {
	c.closedMu.Lock()
	c.closedAt = time.Now()
	c.closedMu.Unlock()
	c.releaseSession()
}

// sessionConn is the client's connection to the device. Close ends it the
// way that lets the device free the session before we open the next one:
// our side is shut (close_notify for TLS, then FIN), then what the device
// still sends is read and dropped until its FIN (it has closed the
// connection) or closeWait passes; only then is the socket closed and the
// session slot given back. Safe for the concurrent Close calls the HTTP
// transport may make (the later ones wait for the first).
type sessionConn struct {
	net.Conn          // what the transport reads and writes (raw, or *tls.Conn over it)
	raw      net.Conn // the TCP connection
	client   *Client  // whose session slot Close gives back
	once     sync.Once
	closing  atomic.Bool
}

// Read fails once Close has begun: what the device sends after that (up to
// its FIN) is drained, never handed to the transport, so a call cancelled
// mid-body ends in an error rather than a body cut short that looks whole.
func (s *sessionConn) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	if s.closing.Load() {
		return 0, net.ErrClosed
	}
	return n, err
}

func (s *sessionConn) Close() error {
	s.closing.Store(true)
	s.once.Do(func() {
		tc, _ := s.Conn.(*tls.Conn) // nil for plain HTTP
		closeGracefully(s.raw, tc)
		s.client.sessionEnded()
	})
	return nil
}

// closeGracefully shuts our side of raw (after TLS's close_notify when tc
// is set), waits for the peer's FIN (bounded by closeWait and
// maxCloseDrain), and closes raw. Errors are of no use here: the
// connection is going away either way.
func closeGracefully(raw net.Conn, tc *tls.Conn) {
	// A deadline first: it also frees a write or read blocked on a device
	// that stopped answering, which CloseWrite would otherwise wait for.
	_ = raw.SetDeadline(time.Now().Add(closeWait))
	if tc != nil {
		_ = tc.CloseWrite() // close_notify; an error only means the handshake never finished
	}
	if cw, ok := raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(raw, maxCloseDrain))
	_ = raw.Close()
}

// dialTLS does the handshake itself so that a refused handshake is told
// apart from an unreachable device: *TLSError versus ErrUnreachable. The
// line is drawn at the device's certificate: a connection that breaks (RST,
// EOF) before the device has presented one is a device that is not really
// there (amtsim's "unreachable" fault accepts and resets); a TLS alert, our
// own refusal of its certificate, or a break after it presented one is a
// TLS refusal (CERT_REJECTED_BY_DEVICE for a provisioner).
func (c *Client) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	raw, err := c.dialRaw(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conf := c.tlsConf.Clone()
	var sawPeer, hookRefused atomic.Bool
	verify := conf.VerifyConnection
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		sawPeer.Store(len(cs.PeerCertificates) > 0)
		if verify == nil {
			return nil
		}
		if err := verify(cs); err != nil {
			hookRefused.Store(true)
			return err
		}
		return nil
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		// The device may still be closing its end (after its alert, or
		// after ours): wait for it like any close, so a retry is not a
		// second session.
		closeGracefully(raw, nil)
		c.sessionEnded()
		var (
			ne net.Error
			oe *net.OpError
			ve *tls.CertificateVerificationError
			rh tls.RecordHeaderError
		)
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("TLS handshake with %s: %w: %w", addr, ErrUnreachable, ctx.Err())
		case hookRefused.Load(), errors.As(err, &ve), errors.As(err, &rh),
			errors.As(err, &oe) && oe.Op == "remote error":
			return nil, &TLSError{Address: addr, Err: err}
		case errors.As(err, &ne) && ne.Timeout():
			return nil, fmt.Errorf("TLS handshake with %s: %w: %w", addr, ErrUnreachable, err)
		case !sawPeer.Load():
			return nil, fmt.Errorf("TLS handshake with %s: connection closed before the device presented a certificate: %w: %w", addr, ErrUnreachable, err)
		}
		return nil, &TLSError{Address: addr, Err: err}
	}
	return &sessionConn{Conn: tc, raw: raw, client: c}, nil
}

// Do sends one request and returns the parsed response. A SOAP fault is
// returned as *Fault (with the response); see the package errors for the
// rest. Method calls are better made with Invoke, which checks ReturnValue.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	what := "wsman " + req.Operation() + " " + req.Class() + " on " + c.cfg.Address
	ctx, span := c.tracer.Start(ctx, "wsman "+req.Operation()+" "+req.Class(),
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("wsman.action", req.Action),
			attribute.String("wsman.resource_class", req.Class()),
			attribute.String("server.address", c.host),
			attribute.Int("server.port", c.port),
		))
	defer span.End()
	resp, err := c.do(ctx, req)
	if err != nil {
		err = fmt.Errorf("%s: %w", what, err)
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return resp, err
}

func (c *Client) do(ctx context.Context, req Request) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	id := c.msgID.Add(1)
	env, err := req.Envelope(id)
	if err != nil {
		return nil, err
	}
	if c.serial != nil {
		select {
		case c.serial <- struct{}{}:
			defer func() { <-c.serial }()
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for this client's previous call: %w", c.classifyTransport(ctx, ctx.Err()))
		}
	}
	sentAuth := false
	for attempt := 0; ; attempt++ {
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(env))
		if err != nil {
			return nil, fmt.Errorf("build HTTP request: %w", err)
		}
		hreq.Header.Set("Content-Type", "application/soap+xml; charset=utf-8")
		if c.cfg.Username != "" {
			h, err := c.auth.header(http.MethodPost, "/wsman")
			if err != nil {
				return nil, err
			}
			if h != "" {
				hreq.Header.Set("Authorization", h)
				sentAuth = true
			}
		}
		hresp, err := c.http.Do(hreq)
		if err != nil {
			return nil, c.classifyTransport(ctx, err)
		}
		if hresp.StatusCode == http.StatusUnauthorized {
			drain(hresp.Body)
			ch, retry, err := c.onUnauthorized(hresp, sentAuth, attempt)
			if err != nil {
				return nil, err
			}
			if retry {
				c.auth.update(ch)
				continue
			}
		}
		body, err := c.readBody(ctx, hresp)
		if err != nil {
			return nil, err
		}
		return decodeHTTP(hresp.StatusCode, body)
	}
}

// onUnauthorized decides what a 401 means: a first challenge or a stale
// nonce is answered (retry), anything else is ErrUnauthorized.
func (c *Client) onUnauthorized(hresp *http.Response, sentAuth bool, attempt int) (challenge, bool, error) {
	if c.cfg.Username == "" {
		return challenge{}, false, fmt.Errorf("device asks for digest credentials and none are configured: %w", ErrUnauthorized)
	}
	ch, err := parseChallenge(hresp.Header.Get("WWW-Authenticate"))
	if err != nil {
		return challenge{}, false, fmt.Errorf("HTTP 401 with an unusable challenge (%v): %w", err, ErrUnauthorized)
	}
	if attempt >= 2 || (sentAuth && !ch.stale && attempt > 0) {
		c.auth.forget()
		return challenge{}, false, fmt.Errorf("digest credentials for user %q refused: %w", c.cfg.Username, ErrUnauthorized)
	}
	return ch, true, nil
}

func (c *Client) readBody(ctx context.Context, hresp *http.Response) ([]byte, error) {
	defer hresp.Body.Close()
	if hresp.ContentLength > c.maxBytes {
		return nil, fmt.Errorf("response declares %d bytes: %w (limit %d)", hresp.ContentLength, ErrResponseTooLarge, c.maxBytes)
	}
	// Sized from Content-Length (checked above) when the device sends one,
	// instead of growing from 512 bytes; read to EOF either way, so that
	// the connection goes back to the idle pool.
	var buf bytes.Buffer
	if hresp.ContentLength > 0 {
		buf.Grow(int(hresp.ContentLength) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(io.LimitReader(hresp.Body, c.maxBytes+1)); err != nil {
		return nil, fmt.Errorf("read response: %w", c.classifyTransport(ctx, err))
	}
	body := buf.Bytes()
	if int64(len(body)) > c.maxBytes {
		return nil, fmt.Errorf("response body: %w (limit %d bytes)", ErrResponseTooLarge, c.maxBytes)
	}
	return body, nil
}

// decodeHTTP turns a status and body into a response or an error: a SOAP
// fault under any status is *Fault; a non-200 without one is *HTTPError.
func decodeHTTP(status int, body []byte) (*Response, error) {
	r, err := ParseResponse(body)
	var f *Fault
	if errors.As(err, &f) {
		f.HTTPStatus = status
		return r, f
	}
	if status != http.StatusOK {
		return nil, &HTTPError{Status: status, Body: printable(body, maxErrorBody)}
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// classifyTransport maps an error of the HTTP exchange to the package's
// sentinels.
func (c *Client) classifyTransport(ctx context.Context, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var (
		te *TLSError
		oe *net.OpError
	)
	switch {
	case errors.As(err, &te), errors.Is(err, ErrUnreachable):
		return err
	case errors.As(err, &oe) && oe.Op == "remote error":
		// A TLS alert after our side of the handshake finished: with TLS
		// 1.3 the server judges our certificate only then.
		return &TLSError{Address: c.cfg.Address, Err: err}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("no answer before the deadline: %w: %w", ErrUnreachable, context.DeadlineExceeded)
	case ctx.Err() != nil:
		return ctx.Err()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return fmt.Errorf("%w: %w", ErrConnectionLost, err)
}

func drain(r io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10))
	r.Close()
}

// printable keeps the first n bytes of b with control characters replaced.
func printable(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(b), "?"))
}

// Get reads one instance of class (selected by sel) and returns its element.
func (c *Client) Get(ctx context.Context, class string, sel ...Selector) (*Node, error) {
	r, err := c.Do(ctx, GetRequest(class, sel...))
	if err != nil {
		return nil, err
	}
	return instanceBody(r, class, "Get")
}

// Put replaces an instance and returns the instance the device answers,
// or nil when it answers with an empty body (fixture amt/mps/put.xml).
func (c *Client) Put(ctx context.Context, class string, props []Property, sel ...Selector) (*Node, error) {
	r, err := c.Do(ctx, PutRequest(class, props, sel...))
	if err != nil {
		return nil, err
	}
	if r.Body == nil {
		return nil, nil
	}
	return instanceBody(r, class, "Put")
}

func instanceBody(r *Response, class, op string) (*Node, error) {
	want := className(ResourceURI(class))
	if r.Body == nil || r.Body.Name.Local != want {
		got := "empty body"
		if r.Body != nil {
			got = r.Body.Name.Local
		}
		return nil, fmt.Errorf("wsman %s %s: %w: body is %s", op, want, ErrMalformedResponse, got)
	}
	return r.Body, nil
}

// Create creates an instance and returns the EPR of the new resource
// (g:ResourceCreated, §8.2).
func (c *Client) Create(ctx context.Context, class string, props []Property) (EPR, error) {
	r, err := c.Do(ctx, CreateRequest(class, props))
	if err != nil {
		return EPR{}, err
	}
	if r.Body == nil || r.Body.Name.Local != "ResourceCreated" {
		return EPR{}, fmt.Errorf("wsman Create %s: %w: no ResourceCreated", class, ErrMalformedResponse)
	}
	e, err := r.Body.EPR()
	if err != nil {
		return EPR{}, fmt.Errorf("wsman Create %s: %w", class, err)
	}
	return e, nil
}

// Delete deletes the instance selected by sel.
func (c *Client) Delete(ctx context.Context, class string, sel ...Selector) error {
	_, err := c.Do(ctx, DeleteRequest(class, sel...))
	return err
}

// Enumerate lists every instance of class: Enumerate, then Pull until
// EndOfSequence (§8.1), bounded to 256 pulls and 16384 items.
func (c *Client) Enumerate(ctx context.Context, class string) ([]*Node, error) {
	r, err := c.Do(ctx, EnumerateRequest(class))
	if err != nil {
		return nil, err
	}
	enumCtx := r.Body.String("EnumerationContext")
	if r.Body == nil || r.Body.Name.Local != "EnumerateResponse" || enumCtx == "" {
		return nil, fmt.Errorf("wsman Enumerate %s: %w: no EnumerationContext", class, ErrMalformedResponse)
	}
	var items []*Node
	for range maxPulls {
		r, err := c.Do(ctx, PullRequest(class, enumCtx))
		if err != nil {
			return nil, err
		}
		if r.Body == nil || r.Body.Name.Local != "PullResponse" {
			return nil, fmt.Errorf("wsman Pull %s: %w: no PullResponse", class, ErrMalformedResponse)
		}
		items = append(items, r.Body.Child("Items").Kids...)
		if len(items) > maxItems {
			return nil, fmt.Errorf("wsman Enumerate %s: more than %d items: %w", class, maxItems, ErrResponseTooLarge)
		}
		if r.Body.Child("EndOfSequence") != nil {
			return items, nil
		}
		if next := r.Body.String("EnumerationContext"); next != "" {
			enumCtx = next
		}
	}
	return nil, fmt.Errorf("wsman Enumerate %s: no EndOfSequence after %d pulls: %w", class, maxPulls, ErrMalformedResponse)
}

// MethodOutput is the answer of a method call: its ReturnValue and the
// <Method>_OUTPUT element for typed outputs.
type MethodOutput struct {
	ReturnValue int
	Node        *Node
}

// Invoke calls method on class with input parameters in order. A non-zero
// ReturnValue gives the output and a *ReturnError.
func (c *Client) Invoke(ctx context.Context, class, method string, in []Property, sel ...Selector) (*MethodOutput, error) {
	return c.invoke(ctx, class, method, in, true, sel...)
}

func (c *Client) invoke(ctx context.Context, class, method string, in []Property, needRV bool, sel ...Selector) (*MethodOutput, error) {
	r, err := c.Do(ctx, MethodRequest(class, method, in, sel...))
	if err != nil {
		return nil, err
	}
	name := className(ResourceURI(class)) + "." + method
	if r.Body == nil || !strings.EqualFold(r.Body.Name.Local, method+"_OUTPUT") {
		return nil, fmt.Errorf("wsman %s on %s: %w: no %s_OUTPUT", name, c.cfg.Address, ErrMalformedResponse, method)
	}
	out := &MethodOutput{Node: r.Body}
	rv, ok := r.Body.Value("ReturnValue")
	if !ok {
		if needRV {
			return nil, fmt.Errorf("wsman %s on %s: %w: no ReturnValue", name, c.cfg.Address, ErrMalformedResponse)
		}
		return out, nil
	}
	n, err := strconv.Atoi(rv)
	if err != nil {
		return nil, fmt.Errorf("wsman %s on %s: %w: ReturnValue %q", name, c.cfg.Address, ErrMalformedResponse, truncate(rv, 20))
	}
	out.ReturnValue = n
	if n != 0 {
		status := StatusName(n)
		if strings.HasPrefix(className(ResourceURI(class)), "CIM_") {
			status = cimStatusName(n)
		}
		return out, fmt.Errorf("wsman on %s: %w", c.cfg.Address, &ReturnError{Method: name, ReturnValue: n, Name: status})
	}
	return out, nil
}
