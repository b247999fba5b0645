package events

import (
	"embed"
	"fmt"
)

// schemaFiles holds one JSON Schema (draft 2020-12) per event body, named
// as Kind.Schema. A test validates real encoded events of every kind
// against them, and docs/asyncapi.yaml refers to them.
//
//go:embed schema/*.json
var schemaFiles embed.FS

// Schema returns the JSON Schema of the body of events of type ceType.
// Several provisioning types share one schema.
func Schema(ceType string) ([]byte, error) {
	k, ok := KindOf(ceType)
	if !ok {
		return nil, fmt.Errorf("schema: %w: unknown ce-type %q", ErrInvalid, ceType)
	}
	b, err := schemaFiles.ReadFile("schema/" + k.Schema)
	if err != nil {
		return nil, fmt.Errorf("schema of %s: %w", ceType, err)
	}
	return b, nil
}
