package k8sschema_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amtprov/amtprov/deploy/internal/k8sschema"
	"github.com/amtprov/amtprov/deploy/internal/schemacheck"
)

// A miniature of client-go's structured-merge-diff schema: one kind with
// metadata, a spec with an int-or-string, a numeric, a list and a map.
const smd = `types:
- name: io.k8s.api.demo.v1.Widget
  map:
    fields:
    - name: apiVersion
      type:
        scalar: string
    - name: kind
      type:
        scalar: string
    - name: metadata
      type:
        namedType: io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta
    - name: spec
      type:
        namedType: io.k8s.api.demo.v1.WidgetSpec
- name: io.k8s.api.demo.v1.WidgetSpec
  map:
    fields:
    - name: port
      type:
        namedType: io.k8s.apimachinery.pkg.util.intstr.IntOrString
    - name: replicas
      type:
        scalar: numeric
    - name: ratio
      type:
        scalar: numeric
    - name: tags
      type:
        list:
          elementType:
            scalar: string
          elementRelationship: atomic
    - name: labels
      type:
        map:
          elementType:
            scalar: string
    - name: anything
      type:
        namedType: __untyped_atomic_
- name: io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta
  map:
    fields:
    - name: name
      type:
        scalar: string
- name: io.k8s.apimachinery.pkg.util.intstr.IntOrString
  scalar: untyped
- name: __untyped_atomic_
  scalar: untyped
  list:
    elementType:
      namedType: __untyped_atomic_
    elementRelationship: atomic
  map:
    elementType:
      namedType: __untyped_atomic_
    elementRelationship: atomic
`

const openAPI = `{"components":{"schemas":{
 "io.k8s.api.demo.v1.WidgetSpec":{"required":["port"],"properties":{"replicas":{"type":"integer"},"ratio":{"type":"number"}}}
}}}`

func schema(t *testing.T) *schemacheck.Schema {
	t.Helper()
	kinds := []k8sschema.Kind{{APIVersion: "demo/v1", Kind: "Widget", Type: "io.k8s.api.demo.v1.Widget"}}
	out, err := k8sschema.Generate([]byte(smd), [][]byte{[]byte(openAPI)}, kinds, "test")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "schema.json")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := schemacheck.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGenerate(t *testing.T) {
	s := schema(t)
	const head = "apiVersion: demo/v1\nkind: Widget\nmetadata: {name: w}\n"
	tests := []struct {
		name, doc string
		want      string // "" = valid, else a substring of the error
	}{
		{"valid, port as number", head + "spec: {port: 80, replicas: 2, ratio: 0.5, tags: [a], labels: {a: b}, anything: {x: [1]}}", ""},
		{"valid, port as name", head + "spec: {port: http}", ""},
		{"null fields are unset", head + "spec: {port: 1, tags: null}\n", ""},
		{"unknown field", head + "spec: {port: 1, replica: 2}", "replica"},
		{"required from OpenAPI", head + "spec: {replicas: 2}", "port"},
		{"integer from OpenAPI", head + "spec: {port: 1, replicas: 1.5}", "replicas"},
		{"number stays a number", head + "spec: {port: 1, ratio: x}", "ratio"},
		{"list element type", head + "spec: {port: 1, tags: [{a: 1}]}", "tags"},
		{"map element type", head + "spec: {port: 1, labels: {a: [1]}}", "labels"},
		{"port as object", head + "spec: {port: {a: 1}}", "port"},
		{"unknown kind", "apiVersion: demo/v1\nkind: Gadget\nmetadata: {name: g}\n", "anyOf"},
		{"wrong version", "apiVersion: demo/v2\nkind: Widget\nmetadata: {name: g}\n", "anyOf"},
		{"no metadata", "apiVersion: demo/v1\nkind: Widget\n", "metadata"},
		{"no name", "apiVersion: demo/v1\nkind: Widget\nmetadata: {}\n", "name"},
		{"second document checked", head + "---\n" + head + "spec: {port: 1, bogus: 1}\n", "document 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Validate("w.yaml", []byte(tt.doc))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("valid document rejected: %v", err)
			case tt.want != "" && err == nil:
				t.Fatal("invalid document accepted")
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestGenerateErrors(t *testing.T) {
	tests := []struct {
		name  string
		smd   string
		kinds []k8sschema.Kind
	}{
		{"kind not in schema", smd, []k8sschema.Kind{{APIVersion: "v1", Kind: "Pod", Type: "io.k8s.api.core.v1.Pod"}}},
		{"dangling reference", "types:\n- name: A\n  map:\n    fields:\n    - name: b\n      type:\n        namedType: B\n",
			[]k8sschema.Kind{{APIVersion: "v1", Kind: "A", Type: "A"}}},
		{"unknown scalar", "types:\n- name: A\n  scalar: complex\n", []k8sschema.Kind{{APIVersion: "v1", Kind: "A", Type: "A"}}},
		{"not YAML", "types: [", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := k8sschema.Generate([]byte(tt.smd), nil, tt.kinds, "test"); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestSchemaYAML(t *testing.T) {
	src := "package internal\n\nvar schemaYAML = typed.YAMLObject(`types:\n- name: A\n  scalar: string\n`)\n"
	got, err := k8sschema.SchemaYAML([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "types:\n- name: A\n  scalar: string\n" {
		t.Fatalf("got %q", got)
	}
	if _, err := k8sschema.SchemaYAML([]byte("package internal\n")); err == nil {
		t.Fatal("no error without the literal")
	}
}

// TestVendoredSchemaIsCurrent regenerates the vendored schema from client-go
// when the module is in the module cache and compares: the file in git must
// be what the generator makes.
func TestVendoredSchemaIsCurrent(t *testing.T) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Skipf("go env GOMODCACHE: %v", err)
	}
	cache := strings.TrimSpace(string(out))
	dir := filepath.Join(cache, "k8s.io", "client-go@v0.34.1")
	src, err := os.ReadFile(filepath.Join(dir, "applyconfigurations", "internal", "internal.go"))
	if err != nil {
		t.Skipf("k8s.io/client-go@v0.34.1 not in the module cache (%v): nothing to compare with", err)
	}
	smdYAML, err := k8sschema.SchemaYAML(src)
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	for _, name := range []string{"api__v1_openapi.json", "apis__apps__v1_openapi.json", "apis__batch__v1_openapi.json"} {
		b, err := os.ReadFile(filepath.Join(dir, "openapi", "openapitest", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	got, err := k8sschema.Generate(smdYAML, docs, k8sschema.Kinds, "k8s.io/client-go "+filepath.Base(dir))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "schemas", "kubernetes", "kubernetes-strict.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatal("deploy/schemas/kubernetes/kubernetes-strict.json is stale: run deploy/cmd/gen-k8s-schema (see its doc)")
	}
}
