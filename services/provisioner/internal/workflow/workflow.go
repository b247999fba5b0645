// Package workflow is the provisioning step engine: for one job it talks
// WS-Man to the device the way PROTOCOL.md §6.3 describes TLS-PKI remote
// configuration (ARCHITECTURE.md "Provisioning workflow"), records every
// step in the job store, and returns how the job ended.
//
// Each step is idempotent (safe to repeat as is) or one-shot (it reads the
// device's state back before it is ever repeated: GenerateKeyPair,
// AddCertificate, the credential context, CommitChanges). A job that
// resumes after a crash or a lease takeover re-runs the steps that only
// build in-memory state (connect, read, credentials) and continues at the
// first step without a finished row; the facts later steps need (key pair,
// certificate, instance ids) are kept in each step's row, never secrets.
//
// Retries inside a step use a short capped exponential backoff for
// transient transport faults (wsman.Retryable); anything left after it is
// returned to the caller as Retry (redeliver later) or a final failure,
// classified by errcode.Classify.
package workflow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/wsman"
	"github.com/amtprov/amtprov/services/provisioner/errcode"
	"github.com/amtprov/amtprov/services/provisioner/internal/jobstore"
	"github.com/amtprov/amtprov/services/provisioner/internal/password"
)

// DomainSource lists the provisioning domains (certauthority's domains
// table, keys decrypted).
type DomainSource interface {
	Domains(ctx context.Context) ([]Domain, error)
}

// CertRequest asks the CA for the device's TLS certificate.
type CertRequest struct {
	UUID         string
	FQDN         string
	PublicKey    []byte // DER as the device gave it (PKCS#1 RSAPublicKey)
	ValidityDays int
}

// Cert is a signed device certificate.
type Cert struct {
	DER []byte
}

// Signer signs device TLS certificates (certauthority over NATS).
type Signer interface {
	SignDeviceCert(ctx context.Context, r CertRequest) (Cert, error)
}

// Keyring seals and opens secrets (libs/secrets.Keyring).
type Keyring interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	OpenCredential(sealed []byte, uuid string, version int, column string) ([]byte, error)
}

// Config tunes the engine. Zero values take the defaults.
type Config struct {
	// DevicePort is the device's TLS port (default 16993, §1).
	DevicePort int
	// Lease is how long each step's lease renewal lasts (default 60 s).
	Lease time.Duration
	// CallTimeout bounds one WS-Man call (default 20 s).
	CallTimeout time.Duration
	// StepRetry is the longest a step retries transient faults before the
	// job is handed back for redelivery (default 10 s).
	StepRetry time.Duration
	// VerifyWait is how long the post-commit verification keeps trying to
	// reach the device with its new certificate (default 30 s).
	VerifyWait time.Duration
	// PostCommitPause is how long to leave the device alone after
	// CommitChanges before reconnecting (default 2 s): firmware applies the
	// new TLS configuration then, and the setup session must be gone before
	// the next one opens (one session per device at a time). MeshCentral
	// waits 5 s (PROTOCOL.md §6.3 step 6).
	PostCommitPause time.Duration
	Tracer          trace.TracerProvider
	Logger          *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.DevicePort == 0 {
		c.DevicePort = 16993
	}
	if c.Lease == 0 {
		c.Lease = time.Minute
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 20 * time.Second
	}
	if c.StepRetry == 0 {
		c.StepRetry = 10 * time.Second
	}
	if c.VerifyWait == 0 {
		c.VerifyWait = 30 * time.Second
	}
	if c.PostCommitPause == 0 {
		c.PostCommitPause = 2 * time.Second
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Engine runs jobs. Safe for concurrent use: each Run has its own state.
type Engine struct {
	cfg     Config
	store   *jobstore.Store
	domains DomainSource
	signer  Signer
	keys    Keyring
	tracer  trace.Tracer
}

// New returns an engine.
func New(cfg Config, store *jobstore.Store, domains DomainSource, signer Signer, keys Keyring) *Engine {
	cfg = cfg.withDefaults()
	return &Engine{cfg: cfg, store: store, domains: domains, signer: signer, keys: keys,
		tracer: cfg.Tracer.Tracer("github.com/amtprov/amtprov/services/provisioner/workflow")}
}

// Result is how Run ended.
type Result struct {
	// Retry: a transient failure; the job may succeed if run again later
	// (the caller requeues it). Outcome.Code says why.
	Retry bool
	// Outcome is the job's end (Retry false) or the transient failure.
	Outcome jobstore.Outcome
	// Err is the underlying error (never contains a secret).
	Err error
	// Tries is how many times the job has been run, this run included (the
	// attempt number of its connect step, which every run starts with; 0
	// when no run of it got that far). Once CommitChanges went through it
	// counts the runs of verify instead: the device is provisioned with
	// the job's credentials, and verification gets a full set of tries
	// before the job may end failed. The caller gives up on a transient
	// failure by this count, not by how often a hello was delivered: a
	// hello is redelivered for other reasons too (a wait in a replica's
	// buffer past AckWait, a duplicate of a leased job).
	Tries int
}

// persisted is what steps keep in their rows for later steps (no secrets).
type persisted struct {
	Domain         string `json:"domain,omitempty"`
	Profile        string `json:"profile,omitempty"`
	KeyInstanceID  string `json:"key_instance_id,omitempty"`
	PublicKey      []byte `json:"public_key,omitempty"`
	CertDER        []byte `json:"cert_der,omitempty"`
	CertInstanceID string `json:"cert_instance_id,omitempty"`
	Hostname       string `json:"hostname,omitempty"`
	DomainName     string `json:"domain_name,omitempty"`
	// CommitRun is the run (connect's attempt number) whose commit went
	// through: later runs count their tries of verify from it, even the
	// ones that fail before verify begins.
	CommitRun int `json:"commit_run,omitempty"`
}

// run is the state of one Run.
type run struct {
	job    jobstore.Job
	owner  string
	hello  *events.DeviceHello
	addr   string
	p      persisted
	steps  map[string]jobstore.Step
	domain Domain
	prof   jobstore.Settings
	setup  *wsman.Client
	realm  string
	state  amt.ProvisioningState
	gs     wsman.GeneralSettings
	fw     wsman.FirmwareVersion
	user   string
	pw     string
	mebx   string
	credV  int
	// toVerify: the device was found committed by this job: skip to verify.
	toVerify   bool
	device     *events.ProvisionedDevice
	tries      int  // Result.Tries
	pastCommit bool // CommitChanges went through (recorded): tries count verify's runs; failures say so
}

func (r *run) close() {
	if r.setup != nil {
		r.setup.Close()
		r.setup = nil
	}
}

type step struct {
	name string
	// always: re-run even when a previous run finished it (it only
	// rebuilds in-memory state or is a cheap read).
	always  bool
	oneShot bool
	fn      func(e *Engine, ctx context.Context, r *run, prev jobstore.Step) error
}

// Step names, in order (they are the contract of `jobs show` and events).
const (
	StepConnect     = "connect"
	StepRead        = "read_settings"
	StepCredentials = "credentials"
	StepMEBx        = "mebx_password"
	StepAdminACL    = "admin_acl"
	StepHostname    = "hostname"
	StepClock       = "clock_sync"
	StepKeyPair     = "tls_key_pair"
	StepSign        = "tls_certificate"
	StepAddCert     = "tls_add_certificate"
	StepContext     = "tls_credential_context"
	StepTLSSettings = "tls_settings"
	StepFeatures    = "features"
	StepCommit      = "commit"
	StepVerify      = "verify"
)

func workflowSteps() []step {
	return []step{
		{name: StepConnect, always: true, fn: (*Engine).connect},
		{name: StepRead, always: true, fn: (*Engine).readSettings},
		{name: StepCredentials, always: true, fn: (*Engine).credentials},
		{name: StepMEBx, fn: (*Engine).setMEBx},
		{name: StepAdminACL, fn: (*Engine).setAdminACL},
		{name: StepHostname, fn: (*Engine).setHostname},
		{name: StepClock, fn: (*Engine).syncClock},
		{name: StepKeyPair, oneShot: true, fn: (*Engine).keyPair},
		{name: StepSign, fn: (*Engine).signCert},
		{name: StepAddCert, oneShot: true, fn: (*Engine).addCert},
		{name: StepContext, oneShot: true, fn: (*Engine).credentialContext},
		{name: StepTLSSettings, fn: (*Engine).tlsSettings},
		{name: StepFeatures, fn: (*Engine).features},
		{name: StepCommit, oneShot: true, fn: (*Engine).commit},
		{name: StepVerify, always: true, fn: (*Engine).verify},
	}
}

// StepNames lists the workflow's steps in order.
func StepNames() []string {
	var out []string
	for _, s := range workflowSteps() {
		out = append(out, s.name)
	}
	return out
}

// Run works on job (leased to owner) for hello h until it ends, fails or
// needs a retry. ctx should carry the hello's trace.
func (e *Engine) Run(ctx context.Context, job jobstore.Job, owner string, h *events.DeviceHello) (res Result) {
	r := &run{job: job, owner: owner, hello: h, addr: net.JoinHostPort(h.SourceIP, strconv.Itoa(e.cfg.DevicePort)),
		steps: map[string]jobstore.Step{}}
	defer r.close()
	defer func() { res.Tries = r.tries }()
	prev, err := e.store.Steps(ctx, job.ID)
	if err != nil {
		return e.fail("", errcode.Wrap(errcode.Internal, err, "read job steps"))
	}
	for _, st := range prev {
		if st.Step == StepConnect {
			r.tries = st.AttemptNo
		}
		r.steps[st.Step] = st
		if st.Done() && len(st.State) > 0 {
			if err := json.Unmarshal(st.State, &r.p); err != nil {
				return e.fail(st.Step, errcode.Wrap(errcode.Internal, err, "read state of step %s", st.Step))
			}
		}
	}
	if r.steps[StepCommit].Done() {
		// Committed in an earlier run: this run is a try of verify, even
		// if it fails before verify begins.
		r.pastCommit, r.tries = true, r.steps[StepVerify].AttemptNo+1
	}
	for seq, st := range workflowSteps() {
		before := r.steps[st.name]
		if before.Done() && !st.always {
			continue
		}
		if r.toVerify && st.name != StepVerify && st.name != StepCredentials {
			if st.name != StepCommit {
				continue
			}
			// The commit went through before it was recorded: the device's
			// state confirmed it; record it as such (no second call).
			st.fn = func(*Engine, context.Context, *run, jobstore.Step) error { return nil }
		}
		if res, stop := e.runStep(ctx, r, seq, st, before); stop {
			return res
		}
	}
	return Result{Outcome: jobstore.Outcome{Succeeded: true, Step: StepVerify, Device: r.device,
		CredentialsVersion: r.credV, TLSCertSHA256: r.device.TLSCertSHA256}}
}

// runStep runs one step in its span and records it; stop reports that the
// job ends (or pauses) here with res.
func (e *Engine) runStep(ctx context.Context, r *run, seq int, st step, before jobstore.Step) (res Result, stop bool) {
	ctx, span := e.tracer.Start(ctx, "provision "+st.name, trace.WithAttributes(
		attribute.String("amt.uuid", r.job.UUID),
		attribute.Int64("amtprov.job_id", r.job.ID),
		attribute.String("amtprov.step", st.name),
		attribute.Bool("amtprov.step.one_shot", st.oneShot),
	))
	defer span.End()
	n, err := e.store.BeginStep(ctx, r.job.ID, r.owner, e.cfg.Lease, st.name, seq)
	if err != nil {
		span.RecordError(err)
		return e.lost(st.name, err), true
	}
	switch {
	case st.name == StepConnect && !r.pastCommit:
		r.tries = n
	case st.name == StepConnect && r.p.CommitRun > 0:
		// A run that cannot reach the device fails here, before verify
		// begins: count it as a try of verify all the same, or a device
		// gone for good would keep its job retrying forever.
		r.tries = max(r.tries, n-r.p.CommitRun+1)
	case st.name == StepVerify:
		r.tries = max(r.tries, n)
	}
	e.cfg.Logger.DebugContext(ctx, "provisioning step", "uuid", r.job.UUID, "job", r.job.ID, "step", st.name, "attempt", before.AttemptNo+1)
	old := r.p
	err = st.fn(e, ctx, r, before)
	if err == nil {
		if st.name == StepCommit {
			r.p.CommitRun = r.tries
		}
		var state json.RawMessage
		if d := diff(old, r.p); d != nil {
			state = d
		}
		sr := jobstore.StepResult{Outcome: jobstore.OutcomeOK, State: state, Attempt: n}
		if st.name == StepCommit {
			// The device holds the job's credentials from now on: they
			// become active with this record, not only when the job
			// succeeds, so a failed verification cannot leave the
			// operator without the admin password.
			sr.CredentialsVersion = r.credV
			if len(r.p.CertDER) > 0 {
				_, sr.TLSCertSHA256 = certPin(r.p.CertDER)
			}
		}
		if ferr := e.store.FinishStep(ctx, r.job, r.owner, st.name, sr); ferr != nil {
			span.RecordError(ferr)
			return e.lost(st.name, ferr), true
		}
		if st.name == StepCommit {
			// From here the runs count verification's tries, and this
			// run is its first (CommitRun keeps connect's count of it).
			r.pastCommit, r.tries = true, 1
		}
		span.SetAttributes(attribute.String("amtprov.step.outcome", jobstore.OutcomeOK))
		return Result{}, false
	}
	if r.pastCommit {
		err = afterCommit(err)
	}
	code := errcode.Classify(err)
	info := errcode.Lookup(code)
	outcome := jobstore.OutcomeFailed
	if info.Retryable {
		outcome = jobstore.OutcomeRetry
	}
	var rv *int
	if v, ok := errcode.ReturnValueOf(err); ok {
		rv = &v
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, string(code))
	span.SetAttributes(attribute.String("amtprov.step.outcome", outcome), attribute.String("amtprov.error_code", string(code)))
	if ferr := e.store.FinishStep(ctx, r.job, r.owner, st.name, jobstore.StepResult{Outcome: outcome, ReturnValue: rv, ErrorCode: string(code), Attempt: n}); ferr != nil {
		return e.lost(st.name, ferr), true
	}
	e.cfg.Logger.WarnContext(ctx, "provisioning step failed", "uuid", r.job.UUID, "job", r.job.ID, "step", st.name,
		"code", code, "retry", info.Retryable, "err", err)
	return Result{Retry: info.Retryable, Err: err, Outcome: jobstore.Outcome{Step: st.name, Code: string(code),
		Hint: info.Hint, Detail: detail(err), RV: rv}}, true
}

// afterCommit makes a failure after CommitChanges say that the device is
// provisioned with the job's credentials (active since the commit was
// recorded). A device that did not answer gets PROVISIONED_UNVERIFIED, still
// retryable, instead of DEVICE_UNREACHABLE or DEVICE_BUSY, whose hints
// would send the operator to wait for a hello the device no longer sends.
func afterCommit(err error) error {
	switch errcode.Classify(err) {
	case errcode.DeviceUnreachable, errcode.DeviceBusy:
		return errcode.Wrap(errcode.ProvisionedUnverified, err,
			"the device committed its configuration and holds this job's credentials (active: amtprov device credentials UUID); verifying it failed")
	}
	return fmt.Errorf("after CommitChanges (the device holds this job's credentials, active): %w", err)
}

// diff returns the JSON of the fields of now that differ from old (what
// the step established), nil when none does; a field cleared is not
// recorded. It compares field by field (by reflection, so a field added to
// persisted is covered without more code): it runs after every step, and
// marshalling both structs to compare them cost about half a millisecond
// of CPU per device.
func diff(old, now persisted) json.RawMessage {
	var d persisted
	vo, vn, vd := reflect.ValueOf(old), reflect.ValueOf(now), reflect.ValueOf(&d).Elem()
	changed := false
	for i := range vn.NumField() {
		n := vn.Field(i)
		if n.IsZero() || reflect.DeepEqual(n.Interface(), vo.Field(i).Interface()) {
			continue
		}
		vd.Field(i).Set(n)
		changed = true
	}
	if !changed {
		return nil
	}
	b, _ := json.Marshal(d) // strings, bytes and an int: cannot fail
	return b
}

func (e *Engine) lost(stepName string, err error) Result {
	if errors.Is(err, jobstore.ErrLeaseLost) {
		return Result{Err: err, Retry: true, Outcome: jobstore.Outcome{Step: stepName, Code: "LEASE_LOST", Detail: "another worker took the job over"}}
	}
	return e.fail(stepName, errcode.Wrap(errcode.Internal, err, "record step %s", stepName))
}

func (e *Engine) fail(stepName string, err error) Result {
	code := errcode.Classify(err)
	info := errcode.Lookup(code)
	return Result{Retry: info.Retryable, Err: err, Outcome: jobstore.Outcome{Step: stepName, Code: string(code), Hint: info.Hint, Detail: detail(err)}}
}

// detail is the error text for operators (the store bounds it).
func detail(err error) string { return err.Error() }

// retry runs op with the in-step backoff: transient transport faults are
// retried until StepRetry passes; ErrConnectionLost only for idempotent ops
// (one-shot ops read state back themselves before repeating).
func (e *Engine) retry(ctx context.Context, idempotent bool, op func(context.Context) error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 2 * time.Second
	b.MaxElapsedTime = e.cfg.StepRetry
	return backoff.Retry(func() error {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return backoff.Permanent(err)
		}
		if wsman.Retryable(err) && (idempotent || !errors.Is(err, wsman.ErrConnectionLost)) {
			return err
		}
		return backoff.Permanent(err)
	}, backoff.WithContext(b, ctx))
}

func (e *Engine) client(addr string, cfg wsman.Config) (*wsman.Client, error) {
	cfg.Address = addr
	cfg.Timeout = e.cfg.CallTimeout
	cfg.DialTimeout = min(e.cfg.CallTimeout, 5*time.Second)
	cfg.Tracer = e.cfg.Tracer
	c, err := wsman.New(cfg)
	if err != nil {
		return nil, errcode.Wrap(errcode.Internal, err, "wsman client for %s", addr)
	}
	return c, nil
}

// connect picks the provisioning domain: among the domains whose root the
// device trusts (its hello), the first whose chain the device accepts in
// the TLS handshake (§6.1).
func (e *Engine) connect(ctx context.Context, r *run, _ jobstore.Step) error {
	if r.hello.InterfaceVersion < 3 {
		return errcode.New(errcode.PSKNotSupported, "hello interface version %d", r.hello.InterfaceVersion)
	}
	all, err := e.domains.Domains(ctx)
	if err != nil {
		return errcode.Wrap(errcode.Internal, err, "list provisioning domains")
	}
	cands := candidates(all, r.hello.RootHashes, r.p.DomainName)
	if len(cands) == 0 {
		return errcode.New(errcode.NoMatchingProvisioningCert, "the device trusts %d root hashes (%s); the %d provisioning domains have roots %s",
			len(r.hello.RootHashes), hashList(r.hello.RootHashes), len(all), domainRoots(all))
	}
	// On resume, the domain that worked before goes first.
	if r.p.Domain != "" {
		for i, d := range cands {
			if d.Name == r.p.Domain {
				cands[0], cands[i] = cands[i], cands[0]
			}
		}
	}
	var rejected []string
	var lastErr error
	now := time.Now()
	for _, d := range cands {
		c, err := e.client(r.addr, wsman.Config{TLS: wsman.SetupTLSConfig(d.Chain, nil)})
		if err != nil {
			return err
		}
		var st wsman.SetupAndConfigurationService
		err = e.retry(ctx, true, func(ctx context.Context) error {
			var err error
			st, err = c.SetupAndConfiguration(ctx)
			return err
		})
		if err == nil {
			r.setup, r.domain, r.p.Domain, r.state = c, d, d.Name, st.ProvisioningState
			return nil
		}
		c.Close()
		if errors.Is(err, wsman.ErrUnauthorized) {
			// The device wants digest: it is provisioned. If this job
			// reached CommitChanges (a worker that died after committing),
			// only verification is left; otherwise someone else did it.
			if cm, ok := r.steps[StepCommit]; ok && cm.AttemptNo > 0 && len(r.p.CertDER) > 0 {
				r.domain, r.p.Domain, r.toVerify = d, d.Name, true
				return nil
			}
			return errcode.Wrap(errcode.AMTNotPermitted, err, "the device is already provisioned (it asks for digest credentials)%s", e.heldCredentials(ctx, r.job.UUID))
		}
		if errcode.Classify(err) != errcode.CertRejectedByDevice {
			return fmt.Errorf("connect to %s with domain %s: %w", r.addr, d.Name, err)
		}
		lastErr = err
		if p := d.chainProblem(now); p != "" {
			rejected = append(rejected, d.Name+" ("+p+")")
		} else {
			rejected = append(rejected, d.Name+" (suffix "+d.Suffix+")")
		}
	}
	// Every trusted chain was refused. A chain firmware would refuse
	// anywhere is a certificate problem; otherwise the device's DNS suffix
	// does not match (§6.1 item 3d).
	for _, d := range cands {
		if d.chainProblem(now) == "" {
			return errcode.Wrap(errcode.DomainSuffixMismatch, lastErr, "the device refused the chains of %s: its DNS suffix matches none of them",
				strings.Join(rejected, ", "))
		}
	}
	return errcode.Wrap(errcode.CertRejectedByDevice, lastErr, "the device refused %s", strings.Join(rejected, ", "))
}

func hashList(hs []events.RootHash) string {
	var b []string
	for _, h := range hs {
		v := h.Hex
		if len(v) > 12 {
			v = v[:12] + "..."
		}
		b = append(b, h.Alg+":"+v)
	}
	return strings.Join(b, " ")
}

func domainRoots(ds []Domain) string {
	if len(ds) == 0 {
		return "(none)"
	}
	var b []string
	for _, d := range ds {
		v := d.RootSHA256
		if len(v) > 12 {
			v = v[:12] + "..."
		}
		b = append(b, d.Name+"=sha256:"+v)
	}
	return strings.Join(b, " ")
}

// heldCredentials tells the operator of a device found provisioned which
// active credentials amtprov holds for it ("" when none or unreadable).
func (e *Engine) heldCredentials(ctx context.Context, uuid string) string {
	c, err := e.store.DeviceCredentials(ctx, uuid)
	if err != nil || !c.Active {
		return ""
	}
	by := ""
	if c.JobID != nil {
		by = fmt.Sprintf(" from job %d", *c.JobID)
	}
	return fmt.Sprintf("; amtprov holds its active credentials (version %d%s, source %s): amtprov device credentials %s", c.Version, by, c.Source, uuid)
}

// readSettings reads realm, version and setup state (§6.3 step 1) and
// picks the profile.
func (e *Engine) readSettings(ctx context.Context, r *run, _ jobstore.Step) error {
	err := e.retry(ctx, true, func(ctx context.Context) error {
		gs, err := r.setup.GeneralSettings(ctx)
		if err != nil {
			return err
		}
		ids, err := r.setup.SoftwareIdentities(ctx)
		if err != nil {
			return err
		}
		st, err := r.setup.SetupAndConfiguration(ctx)
		if err != nil {
			return err
		}
		r.gs, r.state = gs, st.ProvisioningState
		r.fw, _ = wsman.FirmwareVersionOf(ids)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read settings of %s: %w", r.addr, err)
	}
	r.realm = r.gs.DigestRealm
	switch r.state {
	case amt.InProvisioning:
	case amt.PostProvisioning:
		if c, ok := r.steps[StepCommit]; ok && c.AttemptNo > 0 {
			r.toVerify = true // our own commit went through before we could record it
			break
		}
		return errcode.New(errcode.AMTNotPermitted, "the device is already provisioned (post-provisioning)%s", e.heldCredentials(ctx, r.job.UUID))
	default:
		return errcode.New(errcode.AMTInvalidState, "the device is in %s-provisioning, not in setup mode", r.state)
	}
	suffixes := []string{r.gs.DomainName, r.domain.Suffix}
	p, err := e.store.ProfileFor(ctx, r.job.UUID, suffixes)
	if errors.Is(err, jobstore.ErrNotFound) {
		return errcode.New(errcode.NoProfile, "no profile is assigned to the device, none matches %q, and there is no default", r.gs.DomainName)
	}
	if err != nil {
		return errcode.Wrap(errcode.Internal, err, "choose profile")
	}
	r.prof, r.p.Profile = p.Settings.Defaults(), p.Name
	r.job.Profile, r.job.Domain = p.Name, r.domain.Name
	if err := e.store.SetRouting(ctx, r.job.ID, r.owner, p.Name, r.domain.Name); err != nil {
		return errcode.Wrap(errcode.Internal, err, "record profile")
	}
	return nil
}

// credentials generates the device's admin and MEBx passwords and stores
// them encrypted before anything is sent to the device; a resumed job
// reads back the ones it stored.
func (e *Engine) credentials(ctx context.Context, r *run, _ jobstore.Step) error {
	c, err := e.store.JobCredentials(ctx, r.job.ID)
	switch {
	case err == nil:
		pw, err := e.keys.OpenCredential(c.PasswordEnc, r.job.UUID, c.Version, "password_enc")
		if err != nil {
			return errcode.Wrap(errcode.SecretsUnavailable, err, "open stored admin password")
		}
		mebx, err := e.keys.OpenCredential(c.MEBxPasswordEnc, r.job.UUID, c.Version, "mebx_password_enc")
		if err != nil {
			return errcode.Wrap(errcode.SecretsUnavailable, err, "open stored MEBx password")
		}
		r.user, r.pw, r.mebx, r.credV = c.Username, string(pw), string(mebx), c.Version
		return nil
	case !errors.Is(err, jobstore.ErrNotFound):
		return errcode.Wrap(errcode.Internal, err, "read stored credentials")
	}
	pw, err := password.New()
	if err != nil {
		return errcode.Wrap(errcode.Internal, err, "generate admin password")
	}
	mebx, err := password.New()
	if err != nil {
		return errcode.Wrap(errcode.Internal, err, "generate MEBx password")
	}
	user := r.prof.AdminUser
	if user == "" {
		user = "admin"
	}
	v, err := e.store.SaveJobCredentials(ctx, r.job.ID, r.owner, r.job.UUID, user, func(version int, column string) ([]byte, string, error) {
		plain := pw
		if column == "mebx_password_enc" {
			plain = mebx
		}
		sealed, err := e.keys.Seal([]byte(plain), secrets.CredentialAAD(r.job.UUID, version, column))
		if err != nil {
			return nil, "", errcode.Wrap(errcode.SecretsUnavailable, err, "seal %s", column)
		}
		return sealed, secrets.KeyID(sealed), nil
	})
	if err != nil {
		if errors.Is(err, jobstore.ErrLeaseLost) {
			return err
		}
		return errcode.Wrap(errcode.SecretsUnavailable, err, "store credentials")
	}
	r.user, r.pw, r.mebx, r.credV = user, pw, mebx, v
	return nil
}

func (e *Engine) setMEBx(ctx context.Context, r *run, _ jobstore.Step) error {
	return e.retry(ctx, true, func(ctx context.Context) error { return r.setup.SetMEBxPassword(ctx, r.mebx) })
}

func (e *Engine) setAdminACL(ctx context.Context, r *run, _ jobstore.Step) error {
	return e.retry(ctx, true, func(ctx context.Context) error {
		return r.setup.SetAdminACLEntryEx(ctx, r.user, r.realm, r.pw)
	})
}

// hostnameFor fills the profile's template.
func hostnameFor(tmpl, uuid string) string {
	compact := strings.ReplaceAll(uuid, "-", "")
	h := strings.NewReplacer("{uuid}", compact, "{uuid8}", compact[:min(8, len(compact))]).Replace(tmpl)
	return strings.ToLower(h)
}

// setHostname writes host and domain name (§7.5: Get, change, Put).
func (e *Engine) setHostname(ctx context.Context, r *run, _ jobstore.Step) error {
	host := hostnameFor(r.prof.HostnameTemplate, r.job.UUID)
	dom := r.gs.DomainName
	if dom == "" {
		dom = r.domain.Suffix
	}
	err := e.retry(ctx, true, func(ctx context.Context) error {
		gs, err := r.setup.GeneralSettings(ctx)
		if err != nil {
			return err
		}
		gs.HostName, gs.DomainName = host, dom
		_, err = r.setup.PutGeneralSettings(ctx, gs)
		return err
	})
	if err != nil {
		return err
	}
	r.p.Hostname, r.p.DomainName = host, dom
	return nil
}

// syncClock sets the device clock when it is more than 10 s off (§6.3 step 4).
func (e *Engine) syncClock(ctx context.Context, r *run, _ jobstore.Step) error {
	return e.retry(ctx, true, func(ctx context.Context) error {
		tm1 := time.Now()
		ta0, err := r.setup.LowAccuracyTime(ctx)
		if err != nil {
			return err
		}
		if d := ta0.Sub(tm1); d < 10*time.Second && d > -10*time.Second {
			return nil
		}
		return r.setup.SetHighAccuracyTime(ctx, ta0, tm1, time.Now())
	})
}

// keyPair makes the device's TLS key pair (§6.3 step 5). One-shot: a
// repeat first looks for a key pair already on the device.
func (e *Engine) keyPair(ctx context.Context, r *run, prev jobstore.Step) error {
	tried := prev.AttemptNo > 0
	var id string
	err := e.retry(ctx, false, func(ctx context.Context) error {
		if tried {
			kps, err := r.setup.KeyPairs(ctx)
			if err != nil {
				return err
			}
			if len(kps) > 0 {
				id = kps[len(kps)-1].InstanceID
				return nil
			}
		}
		tried = true
		epr, err := r.setup.GenerateKeyPair(ctx, wsman.KeyAlgorithmRSA, wsman.KeyLength2048)
		if err != nil {
			return err
		}
		id = epr.Selector("InstanceID")
		return nil
	})
	if err != nil {
		return err
	}
	var pub []byte
	err = e.retry(ctx, true, func(ctx context.Context) error {
		kps, err := r.setup.KeyPairs(ctx)
		if err != nil {
			return err
		}
		for _, k := range kps {
			if k.InstanceID == id {
				pub = k.DERKey
				return nil
			}
		}
		return backoff.Permanent(errcode.New(errcode.DeviceResponseInvalid, "key pair %q is not among the device's key pairs", id))
	})
	if err != nil {
		return err
	}
	r.p.KeyInstanceID, r.p.PublicKey = id, pub
	return nil
}

// signCert has the CA sign a certificate for the device's key (FQDN =
// host name + domain). The CA supersedes any earlier one for the device.
func (e *Engine) signCert(ctx context.Context, r *run, _ jobstore.Step) error {
	fqdn := r.p.Hostname + "." + r.p.DomainName
	c, err := e.signer.SignDeviceCert(ctx, CertRequest{UUID: r.job.UUID, FQDN: fqdn, PublicKey: r.p.PublicKey, ValidityDays: r.prof.TLSValidityDays})
	if err != nil {
		return fmt.Errorf("sign TLS certificate for %s: %w", fqdn, err)
	}
	r.p.CertDER = c.DER
	return nil
}

// addCert stores the signed certificate on the device. One-shot: a repeat
// looks for the same certificate first.
func (e *Engine) addCert(ctx context.Context, r *run, prev jobstore.Step) error {
	tried := prev.AttemptNo > 0
	return e.retry(ctx, false, func(ctx context.Context) error {
		if tried {
			certs, err := r.setup.PublicKeyCertificates(ctx)
			if err != nil {
				return err
			}
			for _, c := range certs {
				if string(c.X509Certificate) == string(r.p.CertDER) {
					r.p.CertInstanceID = c.InstanceID
					return nil
				}
			}
		}
		tried = true
		epr, err := r.setup.AddCertificate(ctx, r.p.CertDER)
		if err != nil {
			return err
		}
		r.p.CertInstanceID = epr.Selector("InstanceID")
		return nil
	})
}

// credentialContext makes the certificate the device's TLS certificate
// (§7.6): Create, or Put when a context exists.
func (e *Engine) credentialContext(ctx context.Context, r *run, _ jobstore.Step) error {
	return e.retry(ctx, false, func(ctx context.Context) error {
		ctxs, err := r.setup.TLSCredentialContexts(ctx)
		if err != nil {
			return err
		}
		for _, c := range ctxs {
			if c.CertificateInstanceID() == r.p.CertInstanceID {
				return nil
			}
		}
		if len(ctxs) > 0 {
			return r.setup.PutTLSCredentialContext(ctx, r.p.CertInstanceID)
		}
		_, err = r.setup.CreateTLSCredentialContext(ctx, r.p.CertInstanceID)
		return err
	})
}

// tlsSettings enables TLS on the network interface; plain 16992 is not
// accepted any more (ARCHITECTURE.md "Security").
func (e *Engine) tlsSettings(ctx context.Context, r *run, _ jobstore.Step) error {
	return e.retry(ctx, true, func(ctx context.Context) error {
		_, err := r.setup.PutTLSSettingData(ctx, wsman.TLSSettingData{InstanceID: wsman.TLSRemoteInstanceID, Enabled: true})
		return err
	})
}

// features applies the profile's redirection, KVM and user consent (§7.7).
func (e *Engine) features(ctx context.Context, r *run, _ jobstore.Step) error {
	p := r.prof
	return e.retry(ctx, true, func(ctx context.Context) error {
		if err := r.setup.RequestRedirectionStateChange(ctx, wsman.RedirectionState(p.SOL, p.IDER)); err != nil {
			return err
		}
		red, err := r.setup.RedirectionService(ctx)
		if err != nil {
			return err
		}
		red.ListenerEnabled = p.SOL || p.IDER || p.KVM
		if _, err := r.setup.PutRedirectionService(ctx, red); err != nil {
			return err
		}
		kvm := wsman.KVMDisable
		if p.KVM {
			kvm = wsman.KVMEnable
		}
		if err := r.setup.RequestKVMStateChange(ctx, kvm); err != nil {
			return err
		}
		o, err := r.setup.OptInService(ctx)
		if err != nil {
			return err
		}
		switch p.UserConsent {
		case "none":
			o.OptInRequired = wsman.OptInNone
		case "kvm":
			o.OptInRequired = wsman.OptInKVM
		default:
			o.OptInRequired = wsman.OptInAll
		}
		_, err = r.setup.PutOptInService(ctx, o)
		return err
	})
}

// commit ends remote configuration (§6.3 step 6). One-shot: a repeat, or
// a call whose connection broke, reads the device's state first. A device
// that is still in setup mode after a lost commit restarted and dropped the
// staged settings (DEVICE_REBOOTED): the steps after credentials are
// marked for a re-run and the job is retried.
func (e *Engine) commit(ctx context.Context, r *run, prev jobstore.Step) error {
	repeat := prev.AttemptNo > 0
	err := e.retry(ctx, false, func(ctx context.Context) error { return r.setup.CommitChanges(ctx) })
	if err == nil {
		return nil
	}
	var re *wsman.ReturnError
	if errors.As(err, &re) && re.ReturnValue == 2057 && repeat {
		return e.restart(ctx, r, err, "the device lost its staged settings (DATA_MISSING on a repeated commit)")
	}
	if !errors.Is(err, wsman.ErrConnectionLost) && !errors.Is(err, wsman.ErrUnreachable) {
		return err
	}
	// Outcome unknown: did the device commit?
	r.close()
	if e.committed(ctx, r) {
		return nil
	}
	c, cerr := e.client(r.addr, wsman.Config{TLS: wsman.SetupTLSConfig(r.domain.Chain, nil)})
	if cerr != nil {
		return cerr
	}
	r.setup = c
	var st wsman.SetupAndConfigurationService
	rerr := e.retry(ctx, true, func(ctx context.Context) error {
		var err error
		st, err = c.SetupAndConfiguration(ctx)
		return err
	})
	if rerr != nil {
		return fmt.Errorf("commit on %s: outcome unknown, device unreadable: %w", r.addr, errors.Join(err, rerr))
	}
	if st.ProvisioningState == amt.InProvisioning {
		return e.restart(ctx, r, err, "the connection dropped at CommitChanges and the device is still in setup mode")
	}
	return fmt.Errorf("commit on %s: device in state %s after a lost commit: %w", r.addr, st.ProvisioningState, err)
}

// restart marks the device-changing steps for a re-run and returns the
// retryable DEVICE_REBOOTED.
func (e *Engine) restart(ctx context.Context, r *run, cause error, why string) error {
	if err := e.store.ResetSteps(ctx, r.job.ID, r.owner, StepMEBx, StepCommit); err != nil {
		return errcode.Wrap(errcode.Internal, err, "reset steps")
	}
	return errcode.Wrap(errcode.DeviceRebooted, cause, "%s", why)
}

// postClient is a client for the provisioned device: our certificate
// pinned, digest with the admin credentials.
func (e *Engine) postClient(r *run) (*wsman.Client, string, error) {
	sum, pin := certPin(r.p.CertDER)
	tlsConf, err := wsman.PinnedTLSConfig(sum)
	if err != nil {
		return nil, "", errcode.Wrap(errcode.Internal, err, "pin certificate")
	}
	c, err := e.client(r.addr, wsman.Config{TLS: tlsConf, Username: r.user, Password: r.pw})
	return c, pin, err
}

// certPin is the SHA-256 of a device certificate, raw and as the lower-case
// hex that device_credentials.tls_cert_sha256 stores.
func certPin(der []byte) ([]byte, string) {
	sum := sha256.Sum256(der)
	return sum[:], hex.EncodeToString(sum[:])
}

// committed reports whether the device answers as provisioned with our
// certificate and credentials.
func (e *Engine) committed(ctx context.Context, r *run) bool {
	c, _, err := e.postClient(r)
	if err != nil {
		return false
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	defer cancel()
	st, err := c.SetupAndConfiguration(ctx)
	return err == nil && st.ProvisioningState == amt.PostProvisioning
}

// verify reconnects with the new certificate pinned and the admin
// credentials, and reads back what inventory records.
func (e *Engine) verify(ctx context.Context, r *run, _ jobstore.Step) error {
	if r.setup != nil {
		r.close()
		t := time.NewTimer(e.cfg.PostCommitPause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("verify %s: %w", r.addr, ctx.Err())
		}
	}
	c, sum, err := e.postClient(r)
	if err != nil {
		return err
	}
	defer c.Close()
	d := &events.ProvisionedDevice{TLSCertSHA256: sum, AMTVersion: r.fw.Full()}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 2 * time.Second
	b.MaxElapsedTime = e.cfg.VerifyWait
	err = backoff.Retry(func() error {
		st, err := c.SetupAndConfiguration(ctx)
		if err != nil {
			if wsman.Retryable(err) && ctx.Err() == nil {
				return err
			}
			return backoff.Permanent(err)
		}
		if st.ProvisioningState != amt.PostProvisioning {
			return backoff.Permanent(errcode.New(errcode.VerifyFailed, "device reports %s-provisioning after commit", st.ProvisioningState))
		}
		d.ControlMode = amt.ControlNone.String()
		switch st.ProvisioningMode {
		case wsman.ProvisioningModeACM:
			d.ControlMode = amt.ControlACM.String()
		case wsman.ProvisioningModeCCM:
			d.ControlMode = amt.ControlCCM.String()
		}
		return nil
	}, backoff.WithContext(b, ctx))
	if err != nil {
		return fmt.Errorf("verify %s after commit: %w", r.addr, err)
	}
	err = e.retry(ctx, true, func(ctx context.Context) error {
		ts, err := c.TLSSettings(ctx)
		if err != nil {
			return err
		}
		for _, t := range ts {
			if t.InstanceID == wsman.TLSRemoteInstanceID {
				d.TLSEnabled = t.Enabled
			}
		}
		gs, err := c.GeneralSettings(ctx)
		if err != nil {
			return err
		}
		d.Hostname, d.Domain = gs.HostName, gs.DomainName
		red, err := c.RedirectionService(ctx)
		if err != nil {
			return err
		}
		d.SOL, d.IDER = red.SOL(), red.IDER()
		k, err := c.KVMRedirectionSAP(ctx)
		if err != nil {
			return err
		}
		d.KVM = k.EnabledState == wsman.KVMEnable || k.EnabledState == 6
		return nil
	})
	if err != nil {
		return fmt.Errorf("read configuration of %s after commit: %w", r.addr, err)
	}
	if !d.TLSEnabled {
		return errcode.New(errcode.VerifyFailed, "TLS is not enabled on the device after commit")
	}
	if d.AMTVersion == "" { // resumed straight into verify: read it now
		if err := e.retry(ctx, true, func(ctx context.Context) error {
			ids, err := c.SoftwareIdentities(ctx)
			if err == nil {
				fw, _ := wsman.FirmwareVersionOf(ids)
				d.AMTVersion = fw.Full()
			}
			return err
		}); err != nil {
			return fmt.Errorf("read firmware version of %s after commit: %w", r.addr, err)
		}
	}
	r.device = d
	return nil
}
