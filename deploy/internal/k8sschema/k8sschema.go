// Package k8sschema turns the Kubernetes API schema that client-go ships
// into one strict JSON Schema for the kinds amtprov's manifests use, so that
// deploy/k8s can be checked offline with any JSON Schema validator.
//
// No npm package ships the Kubernetes JSON schemas as files, so the source is
// the Kubernetes project's own: the structured-merge-diff schema generated
// into k8s.io/client-go/applyconfigurations/internal/internal.go (every
// built-in type: field names, scalar types, lists, maps), enriched with the
// `required` and `enum` lists of the OpenAPI v3 documents client-go carries
// in openapi/openapitest/testdata (core/v1, apps/v1, batch/v1). The result is
// "strict" in kubeconform's sense: an unknown field is an error, which is the
// mistake hand-written manifests make most.
//
// Used by deploy/cmd/gen-k8s-schema; the output is vendored under
// deploy/schemas/kubernetes.
package k8sschema

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Kind is one top-level API object the schema accepts.
type Kind struct {
	APIVersion string // "apps/v1", "v1"
	Kind       string // "Deployment"
	Type       string // structured-merge-diff type name, "io.k8s.api.apps.v1.Deployment"
}

// Kinds are the objects amtprov's manifests may contain. Anything else is
// rejected by the generated schema, so adding a kind to deploy/k8s means
// adding it here and regenerating.
var Kinds = []Kind{
	{"v1", "ConfigMap", "io.k8s.api.core.v1.ConfigMap"},
	{"v1", "Namespace", "io.k8s.api.core.v1.Namespace"},
	{"v1", "PersistentVolumeClaim", "io.k8s.api.core.v1.PersistentVolumeClaim"},
	{"v1", "Secret", "io.k8s.api.core.v1.Secret"},
	{"v1", "Service", "io.k8s.api.core.v1.Service"},
	{"v1", "ServiceAccount", "io.k8s.api.core.v1.ServiceAccount"},
	{"apps/v1", "Deployment", "io.k8s.api.apps.v1.Deployment"},
	{"apps/v1", "StatefulSet", "io.k8s.api.apps.v1.StatefulSet"},
	{"autoscaling/v2", "HorizontalPodAutoscaler", "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler"},
	{"batch/v1", "Job", "io.k8s.api.batch.v1.Job"},
	{"networking.k8s.io/v1", "NetworkPolicy", "io.k8s.api.networking.v1.NetworkPolicy"},
	{"policy/v1", "PodDisruptionBudget", "io.k8s.api.policy.v1.PodDisruptionBudget"},
}

// SchemaYAML extracts the structured-merge-diff schema from the source of
// client-go's applyconfigurations/internal/internal.go.
func SchemaYAML(internalGo []byte) ([]byte, error) {
	const open = "var schemaYAML = typed.YAMLObject(`"
	s := string(internalGo)
	i := strings.Index(s, open)
	if i < 0 {
		return nil, errors.New("extract schema: no schemaYAML literal in internal.go")
	}
	s = s[i+len(open):]
	j := strings.Index(s, "`)")
	if j < 0 {
		return nil, errors.New("extract schema: unterminated schemaYAML literal")
	}
	return []byte(s[:j]), nil
}

// smd mirrors sigs.k8s.io/structured-merge-diff/schema, the parts used here.
type smdSchema struct {
	Types []smdNamed `yaml:"types"`
}

type smdNamed struct {
	Name    string `yaml:"name"`
	smdAtom `yaml:",inline"`
}

type smdAtom struct {
	Scalar *string  `yaml:"scalar"`
	List   *smdList `yaml:"list"`
	Map    *smdMap  `yaml:"map"`
}

type smdRef struct {
	NamedType *string `yaml:"namedType"`
	smdAtom   `yaml:",inline"`
}

type smdList struct {
	ElementType smdRef `yaml:"elementType"`
}

type smdMap struct {
	Fields      []smdField `yaml:"fields"`
	ElementType *smdRef    `yaml:"elementType"`
}

type smdField struct {
	Name string `yaml:"name"`
	Type smdRef `yaml:"type"`
}

// openAPI is the part of an OpenAPI v3 document read for `required`/`enum`.
type openAPI struct {
	Components struct {
		Schemas map[string]struct {
			Required   []string `json:"required"`
			Properties map[string]struct {
				Enum []any  `json:"enum"`
				Type string `json:"type"`
			} `json:"properties"`
		} `json:"schemas"`
	} `json:"components"`
}

// Generate builds the JSON Schema (draft 2020-12) for kinds from the
// structured-merge-diff schema smdYAML, adding `required` and `enum` from the
// OpenAPI v3 documents in openAPIDocs where they describe the same type.
// The root schema dispatches on apiVersion and kind and rejects any pair not
// in kinds.
func Generate(smdYAML []byte, openAPIDocs [][]byte, kinds []Kind, source string) ([]byte, error) {
	var s smdSchema
	if err := yaml.Unmarshal(smdYAML, &s); err != nil {
		return nil, fmt.Errorf("parse structured-merge-diff schema: %w", err)
	}
	types := make(map[string]smdAtom, len(s.Types))
	for _, t := range s.Types {
		types[t.Name] = t.smdAtom
	}
	g := &generator{types: types, defs: map[string]any{}, required: map[string][]string{},
		enums: map[string]map[string][]any{}, integers: map[string]bool{}}
	for i, doc := range openAPIDocs {
		var o openAPI
		if err := json.Unmarshal(doc, &o); err != nil {
			return nil, fmt.Errorf("parse OpenAPI document %d: %w", i, err)
		}
		for name, sch := range o.Components.Schemas {
			if len(sch.Required) > 0 {
				g.required[name] = sch.Required
			}
			for prop, p := range sch.Properties {
				if p.Type == "integer" {
					g.integers[name+"."+prop] = true
				}
				if len(p.Enum) > 0 {
					if g.enums[name] == nil {
						g.enums[name] = map[string][]any{}
					}
					g.enums[name][prop] = p.Enum
				}
			}
		}
	}

	var dispatch, known []any
	for _, k := range kinds {
		if _, ok := types[k.Type]; !ok {
			return nil, fmt.Errorf("kind %s %s: type %s not in the schema", k.APIVersion, k.Kind, k.Type)
		}
		if err := g.define(k.Type); err != nil {
			return nil, err
		}
		gvk := map[string]any{
			"properties": map[string]any{
				"apiVersion": map[string]any{"const": k.APIVersion},
				"kind":       map[string]any{"const": k.Kind},
			},
			"required": []any{"apiVersion", "kind"},
		}
		known = append(known, gvk)
		dispatch = append(dispatch, map[string]any{
			"if": gvk,
			"then": map[string]any{
				"$ref":     "#/$defs/" + k.Type,
				"required": []any{"apiVersion", "kind", "metadata"},
				"properties": map[string]any{
					"metadata": map[string]any{"required": []any{"name"}},
				},
			},
		})
	}
	root := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         "https://amtprov.invalid/schemas/kubernetes-strict.json",
		"title":       "Kubernetes objects used by amtprov (strict)",
		"description": "Generated by deploy/cmd/gen-k8s-schema from " + source + ". Do not edit.",
		"type":        "object",
		"required":    []any{"apiVersion", "kind"},
		"anyOf":       known,
		"allOf":       dispatch,
		"$defs":       g.defs,
	}
	out, err := json.MarshalIndent(root, "", " ")
	if err != nil {
		return nil, fmt.Errorf("encode schema: %w", err)
	}
	return append(out, '\n'), nil
}

type generator struct {
	types    map[string]smdAtom
	defs     map[string]any
	required map[string][]string
	enums    map[string]map[string][]any
	integers map[string]bool // "type.field" the OpenAPI documents declare integer
}

// define adds the named type and everything it reaches to defs.
func (g *generator) define(name string) error {
	if _, done := g.defs[name]; done {
		return nil
	}
	atom, ok := g.types[name]
	if !ok {
		return fmt.Errorf("type %s: not in the schema", name)
	}
	g.defs[name] = true // placeholder against cycles (JSONSchemaProps)
	sch, err := g.atom(name, atom)
	if err != nil {
		return fmt.Errorf("type %s: %w", name, err)
	}
	g.defs[name] = sch
	return nil
}

func (g *generator) ref(r smdRef) (map[string]any, error) {
	if r.NamedType != nil {
		switch n := *r.NamedType; n {
		case "__untyped_atomic_", "__untyped_deduced_":
			return map[string]any{}, nil // anything
		default:
			if err := g.define(n); err != nil {
				return nil, err
			}
			return map[string]any{"$ref": "#/$defs/" + n}, nil
		}
	}
	return g.atom("", r.smdAtom)
}

// atom converts one type. Every type also admits null: the API server
// treats an explicit null as "unset" (kubectl writes creationTimestamp: null).
func (g *generator) atom(name string, a smdAtom) (map[string]any, error) {
	switch {
	case a.Map != nil:
		sch := map[string]any{"type": []any{"object", "null"}}
		if len(a.Map.Fields) > 0 {
			props := make(map[string]any, len(a.Map.Fields))
			for _, f := range a.Map.Fields {
				p, err := g.ref(f.Type)
				if err != nil {
					return nil, fmt.Errorf("field %s: %w", f.Name, err)
				}
				if g.integers[name+"."+f.Name] && f.Type.Scalar != nil && *f.Type.Scalar == "numeric" {
					p = map[string]any{"type": []any{"integer", "null"}}
				}
				if enum := g.enums[name][f.Name]; len(enum) > 0 {
					p = map[string]any{"allOf": []any{p}, "enum": append(append([]any{}, enum...), nil)}
				}
				props[f.Name] = p
			}
			sch["properties"] = props
			if req := g.required[name]; len(req) > 0 {
				r := append([]string(nil), req...)
				sort.Strings(r)
				sch["required"] = r
			}
		}
		if a.Map.ElementType != nil {
			el, err := g.ref(*a.Map.ElementType)
			if err != nil {
				return nil, fmt.Errorf("map element: %w", err)
			}
			sch["additionalProperties"] = el
		} else {
			sch["additionalProperties"] = false
		}
		return sch, nil
	case a.List != nil:
		el, err := g.ref(a.List.ElementType)
		if err != nil {
			return nil, fmt.Errorf("list element: %w", err)
		}
		return map[string]any{"type": []any{"array", "null"}, "items": el}, nil
	case a.Scalar != nil:
		switch *a.Scalar {
		case "string":
			return map[string]any{"type": []any{"string", "null"}}, nil
		case "numeric":
			return map[string]any{"type": []any{"number", "null"}}, nil
		case "boolean":
			return map[string]any{"type": []any{"boolean", "null"}}, nil
		case "untyped":
			switch name {
			case "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
				return map[string]any{"type": []any{"string", "integer", "null"}}, nil
			case "io.k8s.apimachinery.pkg.api.resource.Quantity":
				return map[string]any{"type": []any{"string", "number", "null"}}, nil
			}
			return map[string]any{"type": []any{"string", "number", "boolean", "null"}}, nil
		}
		return nil, fmt.Errorf("unknown scalar %q", *a.Scalar)
	}
	return nil, errors.New("type is neither map, list nor scalar")
}
