package inventory

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
	"go.opentelemetry.io/otel/trace"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/inventory/internal/batch"
	"github.com/amtprov/amtprov/services/inventory/internal/pgstore"
	"github.com/amtprov/amtprov/services/inventory/internal/record"
)

// Device is the DEVICE document of the read API, for clients in Go (the
// amtprov CLI decodes `GET /v1/devices/{uuid}` into it).
type Device = record.Device

// Page is one page of GET /v1/devices.
type Page struct {
	Devices []Device `json:"devices"`
	Next    string   `json:"next"` // cursor for the next page; "" on the last page
}

// Errors the read API maps to HTTP statuses (see errorStatus).
var (
	ErrNotFound   = pgstore.ErrNotFound
	ErrBadRequest = errors.New("bad request")
)

// Limits of GET /v1/devices.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Config tunes the consumer side. Zero values take the defaults.
type Config struct {
	Durable   string        // durable consumer name; default "inventory"
	Workers   int           // concurrent handler calls; default 1024
	BatchSize int           // updates per transaction; default 512
	BatchWait time.Duration // how long a batch waits to fill; default 20ms
	Writers   int           // batches written at once, each in its own transaction; default 2
	// AckWait is how long JetStream waits for the ack of a delivered event
	// before redelivering it (to any replica): how soon the events a
	// crashed replica held are worked again. Default 30s.
	AckWait time.Duration
}

func (c Config) withDefaults() Config {
	if c.Durable == "" {
		c.Durable = "inventory"
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 512
	}
	if c.Workers <= 0 {
		c.Workers = 2 * c.BatchSize
	}
	if c.Writers <= 0 {
		c.Writers = 2
	}
	if c.BatchWait <= 0 {
		c.BatchWait = 20 * time.Millisecond
	}
	return c
}

// Service is the inventory: event ingestion and the read API.
type Service struct {
	cfg      Config
	repo     *pgstore.Repo
	js       jetstream.JetStream
	tel      telemetry.Providers
	log      *slog.Logger
	handlers map[string]handler
	multi    map[string]multiHandler
	tracer   trace.Tracer
	m        metrics
	batches  *batch.Batcher[pending]
	started  atomic.Bool
}

// pending is one event's update waiting in a batch, with the trace of the
// message it came from (the batch span links to it).
type pending struct {
	update record.Update
	span   trace.SpanContext
}

type metrics struct {
	events     metric.Int64Counter // by type and outcome
	eventAttrs map[[2]string]metric.AddOption
	batchSize  metric.Int64Histogram   // events per transaction
	batchDur   metric.Float64Histogram // seconds per transaction
	// httpDuration: read API requests by method, route and status (httpmetrics.go).
	httpDuration httpconv.ServerRequestDuration
}

// New builds the inventory on an already migrated database (store.Migrate)
// and a JetStream context whose AMT stream exists (bus.EnsureStream).
func New(cfg Config, pool *pgxpool.Pool, js jetstream.JetStream, tel telemetry.Providers, log *slog.Logger) (*Service, error) {
	if pool == nil || tel.Tracer == nil || tel.Meter == nil || log == nil {
		return nil, errors.New("inventory: pool, telemetry providers and logger are required")
	}
	s := &Service{
		cfg:      cfg.withDefaults(),
		repo:     pgstore.New(pool),
		js:       js,
		tel:      tel,
		log:      log,
		handlers: handlers(),
		multi:    multiHandlers(),
		tracer:   tel.Tracer.Tracer("github.com/amtprov/amtprov/services/inventory"),
	}
	s.m.eventAttrs = eventAttrs()
	meter := tel.Meter.Meter("github.com/amtprov/amtprov/services/inventory")
	var err error
	if s.m.events, err = meter.Int64Counter("inventory.events",
		metric.WithDescription("Events handled by the inventory, by ce-type and outcome (applied, ignored, invalid, failed).")); err != nil {
		return nil, fmt.Errorf("inventory: metrics: %w", err)
	}
	if s.m.batchSize, err = meter.Int64Histogram("inventory.batch.size",
		metric.WithDescription("Events written per inventory transaction."),
		metric.WithExplicitBucketBoundaries(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)); err != nil {
		return nil, fmt.Errorf("inventory: metrics: %w", err)
	}
	if s.m.batchDur, err = meter.Float64Histogram("inventory.batch.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to write one inventory batch, retries included.")); err != nil {
		return nil, fmt.Errorf("inventory: metrics: %w", err)
	}
	if s.m.httpDuration, err = httpconv.NewServerRequestDuration(meter); err != nil {
		return nil, fmt.Errorf("inventory: metrics: %w", err)
	}
	s.batches = batch.New(s.cfg.BatchSize, s.cfg.BatchWait, s.cfg.Writers, s.writeBatch, splitBatch)
	return s, nil
}

// Device returns one device by UUID (any case).
func (s *Service) Device(ctx context.Context, uuid string) (Device, error) {
	id, err := amt.ParseUUID(uuid)
	if err != nil {
		return Device{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return s.repo.Get(ctx, id.String())
}

// Devices returns one page of devices in UUID order, optionally only those
// in provisioning state state ("pre", "in", "post"), starting after cursor.
func (s *Service) Devices(ctx context.Context, state, cursor string, limit int) (Page, error) {
	if state != "" {
		if _, err := amt.ParseProvisioningState(state); err != nil {
			return Page{}, fmt.Errorf("%w: state: %v", ErrBadRequest, err)
		}
	}
	if limit == 0 {
		limit = DefaultPageSize
	}
	if limit < 1 || limit > MaxPageSize {
		return Page{}, fmt.Errorf("%w: limit %d: want 1 to %d", ErrBadRequest, limit, MaxPageSize)
	}
	after, err := decodeCursor(cursor)
	if err != nil {
		return Page{}, err
	}
	devs, more, err := s.repo.List(ctx, state, after, limit)
	if err != nil {
		return Page{}, err
	}
	p := Page{Devices: devs}
	if p.Devices == nil {
		p.Devices = []Device{}
	}
	if more {
		p.Next = encodeCursor(devs[len(devs)-1].UUID)
	}
	return p, nil
}

// Cursors are opaque to clients: the last UUID of a page, base64url.
func encodeCursor(uuid string) string { return base64.RawURLEncoding.EncodeToString([]byte(uuid)) }

func decodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", fmt.Errorf("%w: malformed cursor", ErrBadRequest)
	}
	id, err := amt.ParseUUID(string(b))
	if err != nil {
		return "", fmt.Errorf("%w: malformed cursor", ErrBadRequest)
	}
	return id.String(), nil
}
