package schemacheck_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amtprov/amtprov/deploy/internal/schemacheck"
)

func writeSchema(t *testing.T, src string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "s.json")
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

const schema = `{"$schema":"https://json-schema.org/draft/2020-12/schema",
 "type":"object","required":["name"],"additionalProperties":false,
 "properties":{"name":{"type":"string"},"port":{"type":"integer","maximum":65535},"when":{"type":"string"}}}`

func TestValidate(t *testing.T) {
	s, err := schemacheck.Load(writeSchema(t, schema))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, doc string
		want      string // "" = valid
		index     int
	}{
		{"valid", "name: a\nport: 80\n", "", 0},
		{"several documents", "name: a\n---\nname: b\n", "", 0},
		{"empty documents skipped", "---\nname: a\n---\n", "", 0},
		{"timestamp becomes a string", "name: a\nwhen: 2026-11-26T20:00:00Z\n", "", 0},
		{"anchors and merge keys", "x: &x {name: a}\n", "x", 0},
		{"merge key resolved", "name: a\n<<: {port: 1}\n", "", 0},
		{"missing required", "port: 80\n", "name", 0},
		{"wrong type", "name: 1\n", "name", 0},
		{"out of range", "name: a\nport: 70000\n", "maximum", 0},
		{"second document", "name: a\n---\nname: b\nextra: 1\n", "extra", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Validate("f.yaml", []byte(tt.doc))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			var de *schemacheck.DocError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DocError", err)
			}
			if de.Index != tt.index || de.File != "f.yaml" {
				t.Errorf("DocError at %s/%d, want f.yaml/%d", de.File, de.Index, tt.index)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestDocumentsErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		is        error
	}{
		{"empty", "", schemacheck.ErrEmpty},
		{"only separators", "---\n---\n", schemacheck.ErrEmpty},
		{"bad YAML", "a: [\n", nil},
		{"non-string keys", "{1: a}\n", nil},
		{"too big", strings.Repeat("a", schemacheck.MaxFileSize+1), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := schemacheck.Documents([]byte(tt.doc))
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("error %v is not %v", err, tt.is)
			}
		})
	}
}

func TestObjectNameInError(t *testing.T) {
	s, err := schemacheck.Load(writeSchema(t, `{"type":"object","properties":{"spec":{"type":"object"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Validate("k.yaml", []byte("kind: Deployment\nmetadata: {name: web}\nspec: 1\n"))
	if err == nil || !strings.Contains(err.Error(), "(Deployment/web)") {
		t.Fatalf("error %v does not name the object", err)
	}
}

func TestLoadIsOffline(t *testing.T) {
	_, err := schemacheck.Load(writeSchema(t, `{"$ref":"https://example.com/other.json"}`))
	if err == nil || !strings.Contains(err.Error(), "no network") {
		t.Fatalf("remote $ref: error %v, want a refusal to load it", err)
	}
	if _, err := schemacheck.Load(writeSchema(t, `{"type":`)); err == nil {
		t.Fatal("broken schema loads")
	}
	if _, err := schemacheck.Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("missing schema loads")
	}
}
