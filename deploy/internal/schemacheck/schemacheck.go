// Package schemacheck validates YAML files (docker-compose.yml, Kubernetes
// manifests) against a vendored JSON Schema, offline. Used by the deploy
// module's tests and by deploy/cmd/validate-deploy.
package schemacheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds what Validate reads; deployment files are a few KiB.
const MaxFileSize = 4 << 20

// Schema is a compiled JSON Schema.
type Schema struct {
	name string
	sch  *jsonschema.Schema
}

// Load compiles the JSON Schema in file. Its $refs must stay inside the file
// (the vendored schemas are self-contained), so nothing is fetched.
func Load(file string) (*Schema, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("open schema: %w", err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(io.LimitReader(f, MaxFileSize))
	if err != nil {
		return nil, fmt.Errorf("parse schema %s: %w", file, err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(offline{})
	c.AssertFormat()
	url := "file:///" + filepath.Base(file)
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("add schema %s: %w", file, err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("compile schema %s: %w", file, err)
	}
	return &Schema{name: file, sch: sch}, nil
}

// offline refuses every URL the compiler would load besides the added
// resource and the bundled metaschemas: CI has no network.
type offline struct{}

func (offline) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema reference %s: no network loading", url)
}

// DocError says which YAML document of a file failed and why.
type DocError struct {
	File  string
	Index int    // 0-based position of the document in the file
	Name  string // kind/name for a Kubernetes object, when known
	Err   error
}

func (e *DocError) Error() string {
	where := fmt.Sprintf("%s: document %d", e.File, e.Index)
	if e.Name != "" {
		where += " (" + e.Name + ")"
	}
	return where + ": " + e.Err.Error()
}

func (e *DocError) Unwrap() error { return e.Err }

// ErrEmpty is returned for a file with no YAML document.
var ErrEmpty = errors.New("no YAML document")

// Documents decodes every YAML document in data into JSON values (maps,
// slices, strings, float64/json.Number, bools, nil), the form the validator
// takes. Empty documents (a lone "---") are skipped.
func Documents(data []byte) ([]any, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("decode YAML: %d bytes is over the %d limit", len(data), MaxFileSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []any
	for i := 0; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("decode YAML document %d: %w", i, err)
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("decode YAML document %d: %w", i, err)
		}
		if v == nil {
			continue
		}
		// YAML → JSON → the validator's value model, so numbers, maps with
		// non-string keys and timestamps are all turned into JSON shapes.
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("convert YAML document %d to JSON: %w", i, err)
		}
		jv, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("convert YAML document %d to JSON: %w", i, err)
		}
		docs = append(docs, jv)
	}
	if len(docs) == 0 {
		return nil, ErrEmpty
	}
	return docs, nil
}

// Validate checks every document of the YAML in data against the schema and
// returns one error joining a *DocError per invalid document, or nil.
func (s *Schema) Validate(file string, data []byte) error {
	docs, err := Documents(data)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	var errs []error
	for i, d := range docs {
		if err := s.sch.Validate(d); err != nil {
			errs = append(errs, &DocError{File: file, Index: i, Name: objectName(d), Err: err})
		}
	}
	return errors.Join(errs...)
}

// ValidateFile reads file and validates it.
func (s *Schema) ValidateFile(file string) error {
	data, err := readLimited(file)
	if err != nil {
		return err
	}
	return s.Validate(file, data)
}

func readLimited(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", file, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return data, nil
}

// objectName is "Kind/name" for a Kubernetes-looking document.
func objectName(doc any) string {
	m, ok := doc.(map[string]any)
	if !ok {
		return ""
	}
	kind, _ := m["kind"].(string)
	meta, _ := m["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	if kind == "" && name == "" {
		return ""
	}
	return strings.TrimSuffix(kind+"/"+name, "/")
}
