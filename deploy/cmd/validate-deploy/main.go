// Command validate-deploy checks amtprov's Dockerfiles, docker-compose.yml
// and deploy/k8s offline, the same checks the deploy module's tests run (see
// package deploy), and prints one line per check. Exit status 1 when any
// fails. scripts/validate-deploy.sh runs it from the repository root:
//
//	go run ./deploy/cmd/validate-deploy [-root DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"

	"github.com/amtprov/amtprov/deploy"
	"github.com/amtprov/amtprov/deploy/internal/schemacheck"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	failed, err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "validate-deploy:", err)
		os.Exit(2)
	}
	if failed > 0 {
		os.Exit(1)
	}
}

type check struct {
	name string
	errs func() []error
}

func run(ctx context.Context, args []string, out io.Writer) (int, error) {
	fs := flag.NewFlagSet("validate-deploy", flag.ContinueOnError)
	root := fs.String("root", ".", "repository root")
	if err := fs.Parse(args); err != nil {
		return 0, err
	}
	read := func(rel string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(*root, rel))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", rel, err)
		}
		return b, nil
	}
	schema := func(rel string) (*schemacheck.Schema, error) {
		return schemacheck.Load(filepath.Join(*root, "deploy", "schemas", rel))
	}
	composeSchema, err := schema("compose/compose-spec.json")
	if err != nil {
		return 0, err
	}
	k8sSchema, err := schema("kubernetes/kubernetes-strict.json")
	if err != nil {
		return 0, err
	}
	bins, err := deploy.LoadBinaries(ctx, *root, deploy.Images)
	if err != nil {
		return 0, err
	}
	compose, err := read("docker-compose.yml")
	if err != nil {
		return 0, err
	}
	ignore, err := read(".dockerignore")
	if err != nil {
		return 0, err
	}
	natsValues, err := read("deploy/k8s/nats/values.yaml")
	if err != nil {
		return 0, err
	}
	manifests, err := filepath.Glob(filepath.Join(*root, "deploy", "k8s", "*.yaml"))
	if err != nil {
		return 0, err
	}
	k8s := map[string][]byte{}
	for _, m := range manifests {
		b, err := os.ReadFile(m)
		if err != nil {
			return 0, fmt.Errorf("read manifest: %w", err)
		}
		k8s[filepath.Base(m)] = b
	}

	var checks []check
	for _, im := range deploy.Images {
		data, err := read(im.Dockerfile)
		if err != nil {
			return 0, err
		}
		note := ""
		if bins[im.Binary] == nil {
			note = " (main package not written yet: binary checks skipped)"
		}
		checks = append(checks, check{im.Dockerfile + note, func() []error {
			return deploy.CheckDockerfile(*root, im, data, bins[im.Binary])
		}})
	}
	checks = append(checks,
		check{".dockerignore keeps the workspace", func() []error { return deploy.CheckDockerignore(*root, ignore) }},
		check{"docker-compose.yml: compose-spec schema", func() []error {
			return one(composeSchema.Validate("docker-compose.yml", compose))
		}},
		check{"docker-compose.yml: topology", func() []error { return deploy.CheckCompose(*root, compose, bins) }},
		check{"deploy/k8s: Kubernetes schema", func() []error {
			var errs []error
			names := make([]string, 0, len(k8s))
			for n := range k8s {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				if n != "kustomization.yaml" {
					errs = append(errs, one(k8sSchema.Validate("deploy/k8s/"+n, k8s[n]))...)
				}
			}
			return errs
		}},
		check{"deploy/k8s: topology", func() []error { return deploy.CheckKubernetes(k8s, bins) }},
		check{"deploy/k8s/nats/values.yaml", func() []error { return deploy.CheckNATSValues(*root, natsValues) }},
	)

	return report(out, checks), nil
}

// report runs the checks and prints one line per check (and one per
// problem), then the "N passed, M failed" summary; it returns M.
func report(out io.Writer, checks []check) int {
	passed, failed := 0, 0
	for _, c := range checks {
		errs := c.errs()
		if len(errs) == 0 {
			passed++
			fmt.Fprintf(out, "ok    %s\n", c.name)
			continue
		}
		failed++
		fmt.Fprintf(out, "FAIL  %s\n", c.name)
		for _, e := range errs {
			fmt.Fprintf(out, "      %v\n", e)
		}
	}
	fmt.Fprintf(out, "%d passed, %d failed\n", passed, failed)
	return failed
}

func one(err error) []error {
	if err == nil {
		return nil
	}
	return []error{err}
}
