package events

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Stream layout (ARCHITECTURE.md "Data flow"). StreamSubjects names every
// event as a consumer filter or subscription; the stream itself stores
// exactly the event subjects (StreamSubjectList), not all of amt.v1.>:
// the request/reply subjects amt.v1.ca.sign and amt.v1.admin.> share the
// prefix, and a request must never be persisted (an admin request may carry
// a PFX password) nor answered by a JetStream PubAck.
const (
	StreamName     = "AMT"
	StreamSubjects = "amt.v1.>"
)

// StreamSubjectList is the subjects of the AMT stream: one wildcard per
// event type, <prefix>.<key>.
func StreamSubjectList() []string {
	ks := Kinds()
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.Prefix + ".*"
	}
	return out
}

// CloudEvents binary-mode headers and the JetStream de-duplication header.
const (
	SpecVersion = "1.0"

	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderType        = "ce-type"
	HeaderSource      = "ce-source"
	HeaderTime        = "ce-time"
	HeaderSubject     = "ce-subject"
	HeaderContentType = "content-type"
	HeaderMsgID       = "Nats-Msg-Id"

	ContentTypeJSON = "application/json"
)

// Payload is the body of one event type.
type Payload interface {
	// EventType is the ce-type, e.g. io.amtprov.device.hello.v1.
	EventType() string
	// Key is the last subject token and the ce-subject (usually the device UUID).
	Key() string
	// OccurredAt is the ce-time: when the fact the event reports happened.
	OccurredAt() time.Time
}

// ErrInvalid marks a message that is not a valid amtprov event.
var ErrInvalid = errors.New("invalid event")

// Envelope is one event as it travels: CloudEvents attributes plus the NATS
// subject and the JSON body.
type Envelope struct {
	ID      string    // ce-id; also Nats-Msg-Id
	Type    string    // ce-type
	Source  string    // ce-source, e.g. "/hello-listener/host-1"
	Subject string    // ce-subject: the key, usually the device UUID
	Time    time.Time // ce-time
	Topic   string    // NATS subject, amt.v1.<entity>.<event>.<key>
	Data    []byte    // JSON body
}

// New builds the envelope for p. id should be derived from the fact the
// event reports (so that a retried publish is de-duplicated by JetStream);
// an empty id gets a random one.
func New(source string, p Payload, id string) (Envelope, error) {
	k, ok := KindOf(p.EventType())
	if !ok {
		return Envelope{}, fmt.Errorf("new event: unregistered type %q", p.EventType())
	}
	key := p.Key()
	if err := validToken(key); err != nil {
		return Envelope{}, fmt.Errorf("new %s event: key: %w", k.Type, err)
	}
	data, err := marshal(p)
	if err != nil {
		return Envelope{}, fmt.Errorf("new %s event: %w", k.Type, err)
	}
	if id == "" {
		id = RandomID()
	}
	return Envelope{
		ID:      id,
		Type:    k.Type,
		Source:  source,
		Subject: key,
		Time:    p.OccurredAt().UTC(),
		Topic:   k.Prefix + "." + key,
		Data:    data,
	}, nil
}

// RandomID returns a 128-bit random hex id.
func RandomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Headers renders the CloudEvents binary-mode headers (and Nats-Msg-Id).
// The map is compatible with nats.Header by conversion.
func (e Envelope) Headers() map[string][]string {
	// Sized for the eight headers here plus traceparent, tracestate and
	// Nats-Expected-Stream, which the publisher adds: a map that grows past eight entries is
	// rebuilt, and this runs once per event.
	h := make(map[string][]string, 11)
	// One backing array for the eight one-element values.
	v := [...]string{SpecVersion, e.ID, e.Type, e.Source, e.Time.UTC().Format(time.RFC3339Nano), e.Subject, ContentTypeJSON, e.ID}
	vals := v[:]
	for i, k := range [...]string{HeaderSpecVersion, HeaderID, HeaderType, HeaderSource, HeaderTime, HeaderSubject, HeaderContentType, HeaderMsgID} {
		h[k] = vals[i : i+1 : i+1]
	}
	return h
}

func first(h map[string][]string, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Parse reads an envelope back from a NATS message's subject, headers and
// body, checking the attributes CloudEvents requires and that the subject
// belongs to the type.
func Parse(topic string, h map[string][]string, data []byte) (Envelope, error) {
	e := Envelope{
		ID:      first(h, HeaderID),
		Type:    first(h, HeaderType),
		Source:  first(h, HeaderSource),
		Subject: first(h, HeaderSubject),
		Topic:   topic,
		Data:    data,
	}
	if v := first(h, HeaderSpecVersion); v != SpecVersion {
		return e, fmt.Errorf("%w on %s: ce-specversion %q, want %q", ErrInvalid, topic, v, SpecVersion)
	}
	if e.ID == "" || e.Source == "" {
		return e, fmt.Errorf("%w on %s: ce-id and ce-source are required", ErrInvalid, topic)
	}
	k, ok := KindOf(e.Type)
	if !ok {
		return e, fmt.Errorf("%w on %s: unknown ce-type %q", ErrInvalid, topic, e.Type)
	}
	if !strings.HasPrefix(topic, k.Prefix+".") {
		return e, fmt.Errorf("%w: subject %s does not belong to %s", ErrInvalid, topic, e.Type)
	}
	t, err := time.Parse(time.RFC3339Nano, first(h, HeaderTime))
	if err != nil {
		return e, fmt.Errorf("%w on %s: ce-time: %v", ErrInvalid, topic, err)
	}
	e.Time = t
	return e, nil
}

// Decode unmarshals the body into the event's Go type.
func (e Envelope) Decode() (Payload, error) {
	k, ok := KindOf(e.Type)
	if !ok {
		return nil, fmt.Errorf("%w: unknown ce-type %q", ErrInvalid, e.Type)
	}
	p := k.New()
	if err := json.Unmarshal(e.Data, p); err != nil {
		return nil, fmt.Errorf("%w: decode %s body: %v", ErrInvalid, e.Type, err)
	}
	return p, nil
}

// ValidSubjectPrefix checks that p is a literal subject prefix such as
// SubjectProvisioning: dot-separated tokens, each non-empty and without
// wildcards ('*', '>') or white space. libs/outbox checks a relay's Topics
// with it: a wildcard there is a configuration error, not a filter that
// silently matches nothing.
func ValidSubjectPrefix(p string) error {
	if p == "" {
		return errors.New("empty subject prefix")
	}
	for tok := range strings.SplitSeq(p, ".") {
		if err := validToken(tok); err != nil {
			return err
		}
	}
	return nil
}

// validToken checks a subject token: non-empty, no wildcards, dots or spaces.
func validToken(s string) error {
	if s == "" {
		return errors.New("empty subject token")
	}
	if strings.ContainsAny(s, ".*> \t\r\n") {
		return fmt.Errorf("subject token %q contains '.', '*', '>' or whitespace", s)
	}
	return nil
}
