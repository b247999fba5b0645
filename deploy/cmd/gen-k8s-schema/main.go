// Command gen-k8s-schema regenerates deploy/schemas/kubernetes/kubernetes-strict.json
// from a k8s.io/client-go module directory (see package k8sschema for why
// that source). Run from the repository root:
//
//	go mod download k8s.io/client-go@v0.34.1
//	go run ./deploy/cmd/gen-k8s-schema -client-go "$(go env GOMODCACHE)/k8s.io/client-go@v0.34.1"
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/amtprov/amtprov/deploy/internal/k8sschema"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gen-k8s-schema:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("gen-k8s-schema", flag.ContinueOnError)
	clientGo := fs.String("client-go", "", "directory of the k8s.io/client-go module (required)")
	out := fs.String("out", "deploy/schemas/kubernetes/kubernetes-strict.json", "output file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *clientGo == "" {
		return fmt.Errorf("-client-go is required")
	}
	src, err := os.ReadFile(filepath.Join(*clientGo, "applyconfigurations", "internal", "internal.go"))
	if err != nil {
		return fmt.Errorf("read client-go schema: %w", err)
	}
	smd, err := k8sschema.SchemaYAML(src)
	if err != nil {
		return err
	}
	var docs [][]byte
	for _, name := range []string{"api__v1_openapi.json", "apis__apps__v1_openapi.json", "apis__batch__v1_openapi.json"} {
		b, err := os.ReadFile(filepath.Join(*clientGo, "openapi", "openapitest", "testdata", name))
		if err != nil {
			return fmt.Errorf("read OpenAPI document: %w", err)
		}
		docs = append(docs, b)
	}
	schema, err := k8sschema.Generate(smd, docs, k8sschema.Kinds, "k8s.io/client-go "+filepath.Base(*clientGo))
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, schema, 0o644); err != nil {
		return fmt.Errorf("write schema: %w", err)
	}
	fmt.Printf("wrote %s (%d bytes)\n", *out, len(schema))
	return nil
}
