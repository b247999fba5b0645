package events_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/events"
)

func TestNewHeadersParseDecodeRoundTrip(t *testing.T) {
	for ceType, ps := range samples() {
		for i, p := range ps {
			env, err := events.New("/hello-listener/host-1", p, "id-1")
			if err != nil {
				t.Fatalf("%s/%d: New: %v", ceType, i, err)
			}
			k, _ := events.KindOf(ceType)
			if env.Topic != k.Prefix+"."+p.Key() || env.Subject != p.Key() || env.ID != "id-1" || !env.Time.Equal(p.OccurredAt()) {
				t.Fatalf("%s/%d: envelope = %+v", ceType, i, env)
			}
			h := env.Headers()
			if h[events.HeaderMsgID][0] != env.ID {
				t.Errorf("%s: Nats-Msg-Id %v, want ce-id %s", ceType, h[events.HeaderMsgID], env.ID)
			}
			got, err := events.Parse(env.Topic, h, env.Data)
			if err != nil {
				t.Fatalf("%s/%d: Parse: %v", ceType, i, err)
			}
			if !got.Time.Equal(env.Time) {
				t.Errorf("%s/%d: time %s, want %s", ceType, i, got.Time, env.Time)
			}
			got.Time = env.Time
			if !reflect.DeepEqual(got, env) {
				t.Errorf("%s/%d: Parse(Headers()) = %+v, want %+v", ceType, i, got, env)
			}
			dec, err := got.Decode()
			if err != nil {
				t.Fatalf("%s/%d: Decode: %v", ceType, i, err)
			}
			if dec.EventType() != ceType || !reflect.DeepEqual(dec, p) {
				t.Errorf("%s/%d: Decode = %#v, want %#v", ceType, i, dec, p)
			}
		}
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		p    events.Payload
	}{
		{"unregistered provisioning event", &events.Provisioning{Event: "paused", UUID: testUUID}},
		{"empty key", &events.DeviceHello{}},
		{"key with dot", &events.DeviceHello{UUID: "a.b"}},
		{"key with wildcard", &events.CertIssued{UUID: "*"}},
		{"key with space", &events.Provisioning{Event: events.ProvisioningStarted, UUID: "a b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if env, err := events.New("/x", tt.p, ""); err == nil {
				t.Fatalf("New accepted it: %+v", env)
			}
		})
	}
}

func TestNewRandomIDWhenEmpty(t *testing.T) {
	a, err := events.New("/x", helloV3(), "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := events.New("/x", helloV3(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.ID) != 32 || a.ID == b.ID {
		t.Fatalf("random ids %q and %q: want two distinct 32-hex-digit ids", a.ID, b.ID)
	}
}

func validHeaders(t *testing.T) (string, map[string][]string, []byte) {
	t.Helper()
	env, err := events.New("/src", helloV3(), "id-1")
	if err != nil {
		t.Fatal(err)
	}
	return env.Topic, env.Headers(), env.Data
}

func TestParseRejects(t *testing.T) {
	topic, _, data := validHeaders(t)
	tests := []struct {
		name  string
		topic string
		edit  func(h map[string][]string)
	}{
		{"no headers at all", topic, func(h map[string][]string) { clear(h) }},
		{"wrong specversion", topic, func(h map[string][]string) { h[events.HeaderSpecVersion] = []string{"0.3"} }},
		{"missing id", topic, func(h map[string][]string) { delete(h, events.HeaderID) }},
		{"empty source", topic, func(h map[string][]string) { h[events.HeaderSource] = []string{""} }},
		{"unknown type", topic, func(h map[string][]string) { h[events.HeaderType] = []string{"io.amtprov.device.hello.v9"} }},
		{"subject of another type", events.SubjectCertIssued + "." + testUUID, func(map[string][]string) {}},
		{"bare prefix subject", events.SubjectDeviceHello, func(map[string][]string) {}},
		{"bad time", topic, func(h map[string][]string) { h[events.HeaderTime] = []string{"yesterday"} }},
		{"missing time", topic, func(h map[string][]string) { delete(h, events.HeaderTime) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, h, _ := validHeaders(t)
			tt.edit(h)
			if _, err := events.Parse(tt.topic, h, data); !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Parse error = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	env, err := events.New("/x", helloV3(), "")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"not json": "{", "wrong type": `{"uuid": 5}`, "array": "[]"} {
		e := env
		e.Data = []byte(data)
		if _, err := e.Decode(); !errors.Is(err, events.ErrInvalid) {
			t.Errorf("%s: Decode error = %v, want ErrInvalid", name, err)
		}
	}
	env.Type = "io.amtprov.unknown.v1"
	if _, err := env.Decode(); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("unknown type: Decode error = %v, want ErrInvalid", err)
	}
}

func TestKeysAndIDs(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"hello id", events.HelloID(testUUID, 3), "hello-" + testUUID + "-3"},
		{"discovered by uuid", (&events.DeviceDiscovered{UUID: testUUID, IP: "192.0.2.1"}).Key(), testUUID},
		{"discovered by ipv4", (&events.DeviceDiscovered{IP: "192.0.2.1"}).Key(), "ip-192-0-2-1"},
		{"discovered by ipv6", (&events.DeviceDiscovered{IP: "2001:db8::1"}).Key(), "ip-2001-db8--1"},
		{"provisioning started type", (&events.Provisioning{Event: events.ProvisioningStarted}).EventType(), events.TypeProvisioningStarted},
		{"provisioning failed type", (&events.Provisioning{Event: events.ProvisioningFailed}).EventType(), events.TypeProvisioningFailed},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

// TestKindsAreConsistent: every kind's subject sits under the stream, its
// decoder yields its own type, and types and subjects are unique.
func TestKindsAreConsistent(t *testing.T) {
	types, prefixes := map[string]bool{}, map[string]bool{}
	for _, k := range events.Kinds() {
		if types[k.Type] || prefixes[k.Prefix] {
			t.Errorf("duplicate kind %s / %s", k.Type, k.Prefix)
		}
		types[k.Type], prefixes[k.Prefix] = true, true
		if !strings.HasPrefix(k.Prefix+".", strings.TrimSuffix(events.StreamSubjects, ">")) {
			t.Errorf("%s: subject %s outside the stream's %s", k.Type, k.Prefix, events.StreamSubjects)
		}
		if got := k.New().EventType(); got != k.Type {
			t.Errorf("%s: New() decodes into a %s", k.Type, got)
		}
		if kk, ok := events.KindOf(k.Type); !ok || kk.Prefix != k.Prefix {
			t.Errorf("KindOf(%s) = %+v, %v", k.Type, kk, ok)
		}
	}
	if _, ok := events.KindOf("io.amtprov.device.hello.v2"); ok {
		t.Error("KindOf found an unregistered type")
	}
}

// FuzzEnvelope: Parse never panics on arbitrary subjects, headers and
// bodies, and whatever it accepts survives a Headers/Parse round trip.
func FuzzEnvelope(f *testing.F) {
	env, err := events.New("/src", helloV3(), "id-1")
	if err != nil {
		f.Fatal(err)
	}
	h := env.Headers()
	first := func(k string) string { return h[k][0] }
	f.Add(env.Topic, first(events.HeaderSpecVersion), first(events.HeaderID), first(events.HeaderType), first(events.HeaderSource), first(events.HeaderTime), env.Data)
	f.Add(events.SubjectProvisioning+".failed.x", "1.0", "i", events.TypeProvisioningFailed, "s", "2026-01-02T03:04:05Z", []byte("{}"))
	f.Add("", "", "", "", "", "", []byte(nil))
	f.Add("amt.v1.device.hello.", "1.0", "i", events.TypeDeviceHello, "s", "2026-01-02T03:04:05+01:00", []byte("null"))
	f.Fuzz(func(t *testing.T, topic, spec, id, typ, src, tm string, data []byte) {
		hdr := map[string][]string{
			events.HeaderSpecVersion: {spec}, events.HeaderID: {id}, events.HeaderType: {typ},
			events.HeaderSource: {src}, events.HeaderTime: {tm},
		}
		e, err := events.Parse(topic, hdr, data)
		if err != nil {
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Parse error %v is not ErrInvalid", err)
			}
			return
		}
		_, _ = e.Decode() // must not panic either
		again, err := events.Parse(e.Topic, e.Headers(), e.Data)
		if err != nil {
			t.Fatalf("re-parse of accepted envelope %+v: %v", e, err)
		}
		if !again.Time.Equal(e.Time) {
			t.Fatalf("time %s became %s", e.Time, again.Time)
		}
		again.Time, e.Time = time.Time{}, time.Time{}
		e.Subject = again.Subject // ce-subject is optional on input
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("round trip changed the envelope: %+v -> %+v", e, again)
		}
	})
}

func TestValidSubjectPrefix(t *testing.T) {
	for _, ok := range []string{events.SubjectProvisioning, events.SubjectCertIssued, "amt", "amt.v1.provisioning.started"} {
		if err := events.ValidSubjectPrefix(ok); err != nil {
			t.Errorf("ValidSubjectPrefix(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "amt.v1.provisioning.>", "amt.v1.*.step", "*", ">", "amt..v1", "amt.v1.", ".amt", "amt v1", "amt\tv1", "amt.v1\r", "amt.v1\n"} {
		if err := events.ValidSubjectPrefix(bad); err == nil {
			t.Errorf("ValidSubjectPrefix(%q) = nil, want an error", bad)
		}
	}
}
