package workflow

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestDiffKeepsWhatAStepEstablished: diff names exactly the fields that a
// step set or changed (never one it cleared or left alone), as JSON that
// decodes back onto the earlier state.
func TestDiffKeepsWhatAStepEstablished(t *testing.T) {
	base := persisted{Domain: "corp", Profile: "default", Hostname: "amt-1", DomainName: "corp.example.com"}
	tests := []struct {
		name string
		now  func(p persisted) persisted
		want string
	}{
		{"nothing", func(p persisted) persisted { return p }, ""},
		{"key pair", func(p persisted) persisted {
			p.KeyInstanceID, p.PublicKey = "Intel(r) AMT Key: Handle: 0", []byte{1, 2, 3}
			return p
		}, `{"key_instance_id":"Intel(r) AMT Key: Handle: 0","public_key":"AQID"}`},
		{"changed and cleared", func(p persisted) persisted {
			p.Domain, p.Profile, p.CertDER = "other", "", []byte("x")
			return p
		}, `{"domain":"other","cert_der":"eA=="}`},
		{"commit run", func(p persisted) persisted { p.CommitRun = 3; return p }, `{"commit_run":3}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now(base)
			got := diff(base, now)
			if string(got) != tc.want {
				t.Fatalf("diff = %s, want %s", got, tc.want)
			}
			if got == nil {
				return
			}
			back := base
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if now.Profile == "" {
				now.Profile = base.Profile // a cleared field is not recorded
			}
			b1, _ := json.Marshal(back)
			b2, _ := json.Marshal(now)
			if string(b1) != string(b2) {
				t.Fatalf("state rebuilt from the diff %s, want %s", b1, b2)
			}
		})
	}
}

// TestDiffCoversEveryField: a field of persisted that a step sets is
// recorded whatever its name, so adding a field needs no change to diff.
func TestDiffCoversEveryField(t *testing.T) {
	var now persisted
	v := reflect.ValueOf(&now).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Slice:
			f.SetBytes([]byte{1})
		case reflect.Int:
			f.SetInt(1)
		default:
			t.Fatalf("field %s: kind %s not covered by this test", v.Type().Field(i).Name, f.Kind())
		}
	}
	var back persisted
	if err := json.Unmarshal(diff(persisted{}, now), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, now) {
		t.Fatalf("state rebuilt from the diff %+v, want %+v", back, now)
	}
}
