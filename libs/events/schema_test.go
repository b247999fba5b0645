package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/amtprov/amtprov/libs/events"
)

// compileSchema compiles the embedded schema of ceType with format
// assertions on (date-time, ipv4, ipv6 are checked, not just annotated).
func compileSchema(t *testing.T, ceType string) *jsonschema.Schema {
	t.Helper()
	raw, err := events.Schema(ceType)
	if err != nil {
		t.Fatalf("Schema(%s): %v", ceType, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("schema of %s is not JSON: %v", ceType, err)
	}
	id, _ := doc.(map[string]any)["$id"].(string)
	if id == "" {
		t.Fatalf("schema of %s has no $id", ceType)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(id, doc); err != nil {
		t.Fatalf("add schema %s: %v", id, err)
	}
	s, err := c.Compile(id)
	if err != nil {
		t.Fatalf("compile schema of %s: %v", ceType, err)
	}
	return s
}

func validate(s *jsonschema.Schema, body []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

// TestRealEventsMatchSchemas encodes events of every kind exactly as
// producers do (events.New) and validates the bodies.
func TestRealEventsMatchSchemas(t *testing.T) {
	all := samples()
	for _, k := range events.Kinds() {
		t.Run(k.Type, func(t *testing.T) {
			ps := all[k.Type]
			if len(ps) == 0 {
				t.Fatalf("no sample payload for %s: add one to samples()", k.Type)
			}
			s := compileSchema(t, k.Type)
			for i, p := range ps {
				env, err := events.New("/test", p, "")
				if err != nil {
					t.Fatalf("sample %d: New: %v", i, err)
				}
				if env.Type != k.Type {
					t.Fatalf("sample %d encodes as %s", i, env.Type)
				}
				if err := validate(s, env.Data); err != nil {
					t.Errorf("sample %d body %s\ndoes not match %s: %v", i, env.Data, k.Schema, err)
				}
			}
		})
	}
}

// mutate returns the JSON of p with one top-level field changed (or
// removed when v is del).
type deleteField struct{}

var del = deleteField{}

func mutate(t *testing.T, p events.Payload, field string, v any) []byte {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.(deleteField); ok {
		delete(m, field)
	} else {
		m[field] = v
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSchemasRejectBadBodies(t *testing.T) {
	hash := func(alg, hex string) []map[string]string { return []map[string]string{{"alg": alg, "hex": hex}} }
	samp := samples()
	disc := samp[events.TypeDeviceDiscovered][0]
	failed := samp[events.TypeProvisioningFailed][0]
	cert := samp[events.TypeCertIssued][0]
	tests := []struct {
		name   string
		ceType string
		body   []byte
	}{
		{"hello missing uuid", events.TypeDeviceHello, mutate(t, helloV3(), "uuid", del)},
		{"hello upper-case uuid", events.TypeDeviceHello, mutate(t, helloV3(), "uuid", strings.ToUpper(testUUID))},
		{"hello uuid in wire byte order without dashes", events.TypeDeviceHello, mutate(t, helloV3(), "uuid", "1095ac4ba6042143bae2d45ddf07b684")},
		{"hello bad ip", events.TypeDeviceHello, mutate(t, helloV3(), "source_ip", "192.0.2.300")},
		{"hello port out of range", events.TypeDeviceHello, mutate(t, helloV3(), "source_port", 70000)},
		{"hello unknown interface version", events.TypeDeviceHello, mutate(t, helloV3(), "interface_version", 4)},
		{"hello negative retry count", events.TypeDeviceHello, mutate(t, helloV3(), "retry_count", -1)},
		{"hello admin flag as number", events.TypeDeviceHello, mutate(t, helloV3(), "admin_credentials_set", 1)},
		{"hello unknown hash alg", events.TypeDeviceHello, mutate(t, helloV3(), "root_hashes", hash("md5", strings.Repeat("a", 32)))},
		{"hello sha256 of sha1 length", events.TypeDeviceHello, mutate(t, helloV3(), "root_hashes", hash("sha256", strings.Repeat("a", 40)))},
		{"hello upper-case hex", events.TypeDeviceHello, mutate(t, helloV3(), "root_hashes", hash("sha1", strings.Repeat("A", 40)))},
		{"hello hash without hex", events.TypeDeviceHello, mutate(t, helloV3(), "root_hashes", []map[string]string{{"alg": "sha1"}})},
		{"hello time not RFC 3339", events.TypeDeviceHello, mutate(t, helloV3(), "received_at", "26/11/2026 19:40")},
		{"hello empty listener", events.TypeDeviceHello, mutate(t, helloV3(), "listener", "")},
		{"hello lower-case pid", events.TypeDeviceHello, mutate(t, helloV2(), "pid", "0000037m")},
		{"hello pid too long", events.TypeDeviceHello, mutate(t, helloV2(), "pid", "0000037M0")},
		{"hello carries a secret field", events.TypeDeviceHello, mutate(t, helloV2(), "pps", "NKLDG5DCRRNQE9YZZIJL7LFLVJED69XJ")},
		{"discovered unknown method", events.TypeDeviceDiscovered, mutate(t, disc, "method", "icmp")},
		{"discovered unknown state", events.TypeDeviceDiscovered, mutate(t, disc, "provisioning_state", "done")},
		{"discovered port zero", events.TypeDeviceDiscovered, mutate(t, disc, "ports", []int{0})},
		{"discovered missing ip", events.TypeDeviceDiscovered, mutate(t, disc, "ip", del)},
		{"provisioning lower-case error code", events.TypeProvisioningFailed, mutate(t, failed, "error_code", "amt_invalid_password")},
		{"provisioning attempt as string", events.TypeProvisioningFailed, mutate(t, failed, "attempt", "1")},
		{"provisioning missing job id", events.TypeProvisioningStarted, mutate(t, failed, "job_id", del)},
		{"provisioning carries a password", events.TypeProvisioningStep, mutate(t, failed, "password", "P@ssw0rd")},
		{"cert short fingerprint", events.TypeCertIssued, mutate(t, cert, "fingerprint_sha256", "abcd")},
		{"cert missing not_after", events.TypeCertIssued, mutate(t, cert, "not_after", del)},
		{"cert carries a key", events.TypeCertIssued, mutate(t, cert, "private_key", "-----BEGIN PRIVATE KEY-----")},
		{"not an object", events.TypeDeviceHello, []byte(`["uuid"]`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := validate(compileSchema(t, tt.ceType), tt.body); err == nil {
				t.Fatalf("schema of %s accepted %s", tt.ceType, tt.body)
			}
		})
	}
}

// TestSchemasMatchGoTypes keeps the schemas and the Go types in step: the
// schema's properties are exactly the type's JSON fields, and its required
// list is exactly the fields without omitempty.
func TestSchemasMatchGoTypes(t *testing.T) {
	for _, k := range events.Kinds() {
		t.Run(k.Type, func(t *testing.T) {
			raw, err := events.Schema(k.Type)
			if err != nil {
				t.Fatal(err)
			}
			var s struct {
				Properties map[string]json.RawMessage `json:"properties"`
				Required   []string                   `json:"required"`
			}
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Fatal(err)
			}
			var fields, required []string
			typ := reflect.TypeOf(k.New()).Elem()
			for i := range typ.NumField() {
				name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
				if name == "-" || !typ.Field(i).IsExported() {
					continue
				}
				fields = append(fields, name)
				if !strings.Contains(opts, "omitempty") {
					required = append(required, name)
				}
			}
			props := make([]string, 0, len(s.Properties))
			for p := range s.Properties {
				props = append(props, p)
			}
			sort.Strings(fields)
			sort.Strings(props)
			sort.Strings(required)
			req := slices.Clone(s.Required)
			sort.Strings(req)
			if !slices.Equal(fields, props) {
				t.Errorf("%s: Go fields %v, schema properties %v", k.Schema, fields, props)
			}
			if !slices.Equal(required, req) {
				t.Errorf("%s: Go fields without omitempty %v, schema required %v", k.Schema, required, req)
			}
		})
	}
}

func TestSchemaLookup(t *testing.T) {
	if _, err := events.Schema("io.amtprov.nope.v1"); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Schema(unknown) error = %v, want ErrInvalid", err)
	}
	// Every file in schema/ belongs to a kind, and every kind's file exists.
	used := map[string]bool{}
	for _, k := range events.Kinds() {
		used[k.Schema] = true
	}
	entries, err := os.ReadDir("schema")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if path.Ext(e.Name()) == ".json" {
			files = append(files, e.Name())
			if !used[e.Name()] {
				t.Errorf("schema/%s is not the schema of any kind", e.Name())
			}
		}
	}
	for f := range used {
		if !slices.Contains(files, f) {
			t.Errorf("kinds name schema/%s, which does not exist", f)
		}
	}
}
