package outbox_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/outbox"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
)

// provisioningEnvelope is a provisioning event of kind ev (subject
// amt.v1.provisioning.<ev>.<uuid>).
func provisioningEnvelope(t *testing.T, id string, ev events.ProvisioningEvent) events.Envelope {
	t.Helper()
	env, err := events.New("/outbox-test", &events.Provisioning{Event: ev, UUID: testUUID, JobID: "1", Attempt: 1,
		Step: "connect", Outcome: "ok", At: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}, id)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// permittedPublisher stands for a NATS user allowed to publish only under
// some subject prefixes: anything else fails, as a permissions violation
// does, and is recorded so the test can tell.
type permittedPublisher struct {
	next    outbox.Publisher
	allowed []string

	mu        sync.Mutex
	published []string // ce-ids
	refused   []string // topics outside the permission
}

func (p *permittedPublisher) PublishEnvelope(ctx context.Context, env events.Envelope) error {
	ok := false
	for _, a := range p.allowed {
		ok = ok || strings.HasPrefix(env.Topic, a+".")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !ok {
		p.refused = append(p.refused, env.Topic)
		return fmt.Errorf("permissions violation for publish to %q", env.Topic)
	}
	if err := p.next.PublishEnvelope(ctx, env); err != nil {
		return err
	}
	p.published = append(p.published, env.ID)
	return nil
}

func (p *permittedPublisher) snapshot() (published, refused []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.published...), append([]string(nil), p.refused...)
}

// Two services share the outbox table; each relay, given its own topics,
// publishes exactly its service's rows and never touches the other's, even
// while both run at once.
func TestRelaysWithDisjointTopicsPublishOnlyTheirRows(t *testing.T) {
	pool := storetest.New(t)
	_, js := bustest.Connect(t)
	const perService = 150
	var envs []events.Envelope
	want := map[string][]string{} // prefix -> ce-ids
	for i := range perService {
		c := envelope(t, fmt.Sprintf("cert-%d", i), i)
		p := provisioningEnvelope(t, fmt.Sprintf("prov-%d", i), events.ProvisioningStep)
		envs = append(envs, c, p) // interleaved ids: neither service's rows come first
		want[events.SubjectCertIssued] = append(want[events.SubjectCertIssued], c.ID)
		want[events.SubjectProvisioning] = append(want[events.SubjectProvisioning], p.ID)
	}
	add(t, pool, true, nil, envs...)

	pubs := map[string]*permittedPublisher{}
	var relays []*outbox.Relay
	for _, prefix := range []string{events.SubjectCertIssued, events.SubjectProvisioning} {
		pp := &permittedPublisher{next: bus.NewPublisher(js, "/t", telemetry.Providers{}), allowed: []string{prefix}}
		pubs[prefix] = pp
		relays = append(relays, outbox.NewRelay(pool, pp, outbox.RelayConfig{Topics: []string{prefix}, BatchSize: 40, PollInterval: 20 * time.Millisecond}))
	}
	runUntilDrained(t, pool, relays...)
	for prefix, pp := range pubs {
		published, refused := pp.snapshot()
		if len(refused) > 0 {
			t.Errorf("relay of %s claimed %d rows of other topics, e.g. %s", prefix, len(refused), refused[0])
		}
		if got, w := strings.Join(published, ","), strings.Join(want[prefix], ","); got != w {
			t.Errorf("relay of %s published %d events %.80s..., want its %d in insertion order %.80s...", prefix, len(published), got, len(want[prefix]), w)
		}
	}
	if m := streamMsgs(t, js); m != 2*perService {
		t.Fatalf("stream holds %d messages, want %d", m, 2*perService)
	}
}

// A prefix claims whole subject tokens only, and a relay without Topics
// claims everything.
func TestRelayTopicPrefixMatchesWholeTokens(t *testing.T) {
	tests := []struct {
		name    string
		topics  []string
		wantIDs []string // published by one Flush, in order
	}{
		{"no topics: every row", nil, []string{"started", "step", "cert"}},
		{"one kind", []string{events.SubjectProvisioning + ".step"}, []string{"step"}},
		{"token boundary: st does not match started or step", []string{events.SubjectProvisioning + ".st"}, nil},
		{"two prefixes", []string{events.SubjectCertIssued, events.SubjectProvisioning + ".started"}, []string{"started", "cert"}},
		{"the whole subject family", []string{events.SubjectProvisioning}, []string{"started", "step"}},
		{"no such topic", []string{events.SubjectDeviceDiscovered}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := storetest.New(t)
			_, js := bustest.Connect(t)
			add(t, pool, true, nil,
				provisioningEnvelope(t, "started", events.ProvisioningStarted),
				provisioningEnvelope(t, "step", events.ProvisioningStep),
				envelope(t, "cert", 1))
			cp := &countingPublisher{next: bus.NewPublisher(js, "/t", telemetry.Providers{}), seen: map[string]int{}}
			var order []string
			rec := publisherFunc(func(ctx context.Context, env events.Envelope) error {
				order = append(order, env.ID)
				return cp.PublishEnvelope(ctx, env)
			})
			relay := outbox.NewRelay(pool, rec, outbox.RelayConfig{Topics: tt.topics, Concurrency: 1})
			n, err := relay.Flush(context.Background())
			if err != nil {
				t.Fatalf("Flush: %v", err)
			}
			if n != len(tt.wantIDs) || strings.Join(order, ",") != strings.Join(tt.wantIDs, ",") {
				t.Fatalf("Flush published %d: %v; want %v", n, order, tt.wantIDs)
			}
			if p := pending(t, pool); p != 3-len(tt.wantIDs) {
				t.Fatalf("%d rows left, want %d (other topics untouched)", p, 3-len(tt.wantIDs))
			}
		})
	}
}

type publisherFunc func(ctx context.Context, env events.Envelope) error

func (f publisherFunc) PublishEnvelope(ctx context.Context, env events.Envelope) error {
	return f(ctx, env)
}

// A malformed prefix is a configuration error reported at once, not a
// relay that silently publishes nothing.
func TestRelayRejectsMalformedTopics(t *testing.T) {
	for _, bad := range []string{"", "amt.v1.provisioning.>", "amt.v1.*.step", "amt..v1", "amt.v1.", ".amt", "amt v1"} {
		t.Run(bad, func(t *testing.T) {
			relay := outbox.NewRelay(nil, publisherFunc(func(context.Context, events.Envelope) error { return nil }),
				outbox.RelayConfig{Topics: []string{events.SubjectCertIssued, bad}})
			if _, err := relay.Flush(context.Background()); err == nil || !strings.Contains(err.Error(), "topic prefix") {
				t.Errorf("Flush error = %v, want a topic prefix error", err)
			}
			if err := relay.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "topic prefix") {
				t.Errorf("Run error = %v, want a topic prefix error", err)
			}
		})
	}
}
