package deploy_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amtprov/amtprov/deploy"
	"github.com/amtprov/amtprov/deploy/internal/schemacheck"
)

// repo is the repository under test: its root, the deployment files and
// what go list says of every image's binary.
type repo struct {
	root  string
	bins  map[string]*deploy.Binary
	files map[string][]byte // relative path → content
	k8s   map[string][]byte // deploy/k8s manifests, relative to deploy/k8s

	composeSchema, k8sSchema *schemacheck.Schema
}

func loadRepo(t *testing.T) *repo {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bins, err := deploy.LoadBinaries(context.Background(), root, deploy.Images)
	if err != nil {
		t.Fatal(err)
	}
	r := &repo{root: root, bins: bins, files: map[string][]byte{}, k8s: map[string][]byte{},
		composeSchema: loadSchema(t, "compose/compose-spec.json"),
		k8sSchema:     loadSchema(t, "kubernetes/kubernetes-strict.json"),
	}
	for _, im := range deploy.Images {
		if bins[im.Binary] == nil {
			// Being written by another engineer: the checks that need the
			// binary skip it until its main package exists.
			t.Logf("%s: main package %s not written yet; checks that need the binary skipped", im.Binary, im.Main)
		}
		r.files[im.Dockerfile] = r.read(t, im.Dockerfile)
	}
	for _, f := range []string{"docker-compose.yml", ".dockerignore", "deploy/k8s/nats/values.yaml"} {
		r.files[f] = r.read(t, f)
	}
	matches, err := filepath.Glob(filepath.Join(root, "deploy", "k8s", "*.yaml"))
	if err != nil || len(matches) == 0 {
		t.Fatalf("no manifests in deploy/k8s: %v", err)
	}
	for _, m := range matches {
		rel, _ := filepath.Rel(filepath.Join(root, "deploy", "k8s"), m)
		r.k8s[rel] = r.read(t, filepath.Join("deploy", "k8s", rel))
	}
	return r
}

func (r *repo) read(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadSchema(t *testing.T, rel string) *schemacheck.Schema {
	t.Helper()
	s, err := schemacheck.Load(filepath.Join("schemas", rel))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func noErrors(t *testing.T, errs []error) {
	t.Helper()
	for _, err := range errs {
		t.Error(err)
	}
}

// TestDeploy loads the repository once (go list of every image's binary
// is the slow part) and runs every check on its files, then on broken
// copies of them.
func TestDeploy(t *testing.T) {
	r := loadRepo(t)
	t.Run("repository", func(t *testing.T) { testRepository(t, r) })
	t.Run("schemas reject broken files", func(t *testing.T) { testSchemasRejectBrokenFiles(t, r) })
	t.Run("checks reject broken files", func(t *testing.T) { testChecksRejectBrokenFiles(t, r) })
}

// testRepository runs every check on the repository's own files.
func testRepository(t *testing.T, r *repo) {
	compose, k8s := r.composeSchema, r.k8sSchema

	t.Run("dockerfiles", func(t *testing.T) {
		for _, im := range deploy.Images {
			t.Run(im.Binary, func(t *testing.T) {
				noErrors(t, deploy.CheckDockerfile(r.root, im, r.files[im.Dockerfile], r.bins[im.Binary]))
			})
		}
	})
	t.Run("every service main has an image", func(t *testing.T) {
		mains, err := filepath.Glob(filepath.Join(r.root, "services", "*", "cmd", "*"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mains {
			rel, _ := filepath.Rel(r.root, m)
			if !deploy.HasMain(r.root, rel) {
				continue
			}
			im, ok := deploy.ImageFor(filepath.Base(m))
			if !ok || im.Main != filepath.ToSlash(rel) {
				t.Errorf("%s is a service binary without an image: add it to deploy.Images with a Dockerfile, compose service and Deployment", rel)
			}
		}
	})
	t.Run("dockerignore", func(t *testing.T) {
		noErrors(t, deploy.CheckDockerignore(r.root, r.files[".dockerignore"]))
	})
	t.Run("compose schema", func(t *testing.T) {
		if err := compose.Validate("docker-compose.yml", r.files["docker-compose.yml"]); err != nil {
			t.Error(err)
		}
	})
	t.Run("compose topology", func(t *testing.T) {
		noErrors(t, deploy.CheckCompose(r.root, r.files["docker-compose.yml"], r.bins))
	})
	t.Run("kubernetes schema", func(t *testing.T) {
		for f, data := range r.k8s {
			if f == "kustomization.yaml" {
				continue // not an API object (kustomize's own file)
			}
			if err := k8s.Validate("deploy/k8s/"+f, data); err != nil {
				t.Error(err)
			}
		}
	})
	t.Run("kubernetes topology", func(t *testing.T) {
		noErrors(t, deploy.CheckKubernetes(r.k8s, r.bins))
	})
	t.Run("nats helm values", func(t *testing.T) {
		noErrors(t, deploy.CheckNATSValues(r.root, r.files["deploy/k8s/nats/values.yaml"]))
	})
}

// mutate returns a copy of files with old replaced by new in file name,
// failing the test if old is not there (so a case cannot pass by not
// breaking anything).
func mutate(t *testing.T, files map[string][]byte, name, old, new string) map[string][]byte {
	t.Helper()
	src, ok := files[name]
	if !ok {
		t.Fatalf("no file %s", name)
	}
	if !strings.Contains(string(src), old) {
		t.Fatalf("%s does not contain %q", name, old)
	}
	out := make(map[string][]byte, len(files))
	for k, v := range files {
		out[k] = v
	}
	out[name] = []byte(strings.Replace(string(src), old, new, 1))
	return out
}

func wantError(t *testing.T, errs []error, substr string) {
	t.Helper()
	if len(errs) == 0 {
		t.Fatalf("no error, want one containing %q", substr)
	}
	for _, err := range errs {
		if strings.Contains(err.Error(), substr) {
			return
		}
	}
	t.Fatalf("errors %v: none contains %q", errors.Join(errs...), substr)
}

// testSchemasRejectBrokenFiles proves the schema validation fails on broken
// copies of the real files.
func testSchemasRejectBrokenFiles(t *testing.T, r *repo) {
	compose, k8s := r.composeSchema, r.k8sSchema
	tests := []struct {
		name, file, old, new string
		schema               *schemacheck.Schema
		want                 string
	}{
		{"compose unknown service key", "docker-compose.yml", "    read_only: true\n", "    read_only: true\n    readonly: true\n", compose, "readonly"},
		{"compose bad depends_on condition", "docker-compose.yml", "postgres: { condition: service_healthy }", "postgres: { condition: service_ready }", compose, "condition"},
		{"compose replicas not a number", "docker-compose.yml", "deploy: { replicas: 2 }", "deploy: { replicas: [2] }", compose, "replicas"},
		{"k8s unknown container field", "provisioner.yaml", "imagePullPolicy: IfNotPresent", "imagePullPolicyy: IfNotPresent", k8s, "imagePullPolicyy"},
		{"k8s port is a string", "inventory.yaml", "containerPort: 8080", `containerPort: "8080"`, k8s, "containerPort"},
		{"k8s unknown kind", "provisioner-hpa.yaml", "kind: HorizontalPodAutoscaler", "kind: HorizontalPodAutoscalr", k8s, "document 0"},
		{"k8s missing metadata.name", "config.yaml", "  name: amtprov-config\n", "", k8s, "name"},
		{"k8s service port without port", "inventory.yaml", "- {name: api, port: 8080, targetPort: api, protocol: TCP}", "- {name: api, targetPort: api, protocol: TCP}", k8s, "port"},
		{"k8s replicas a string", "discovery.yaml", "replicas: 1", `replicas: "1"`, k8s, "replicas"},
		{"k8s resources unknown key", "certauthority.yaml", "requests: {cpu: 100m, memory: 64Mi}", "request: {cpu: 100m, memory: 64Mi}", k8s, "request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, key := r.files, tt.file
			if tt.file != "docker-compose.yml" {
				files, key = r.k8s, tt.file
			}
			broken := mutate(t, files, key, tt.old, tt.new)
			err := tt.schema.Validate(tt.file, broken[key])
			if err == nil {
				t.Fatalf("broken %s validates", tt.file)
			}
			var de *schemacheck.DocError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *schemacheck.DocError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// testChecksRejectBrokenFiles proves the topology and Dockerfile checks
// fail on broken copies of the real files.
func testChecksRejectBrokenFiles(t *testing.T, r *repo) {
	hello, _ := deploy.ImageFor("hello-listener")
	inv, _ := deploy.ImageFor("inventory")
	dockerfile := func(im deploy.Image, old, new, want string) func(*testing.T) {
		return func(t *testing.T) {
			files := mutate(t, r.files, im.Dockerfile, old, new)
			wantError(t, deploy.CheckDockerfile(r.root, im, files[im.Dockerfile], r.bins[im.Binary]), want)
		}
	}
	compose := func(old, new, want string) func(*testing.T) {
		return func(t *testing.T) {
			files := mutate(t, r.files, "docker-compose.yml", old, new)
			wantError(t, deploy.CheckCompose(r.root, files["docker-compose.yml"], r.bins), want)
		}
	}
	k8s := func(file, old, new, want string) func(*testing.T) {
		return func(t *testing.T) {
			wantError(t, deploy.CheckKubernetes(mutate(t, r.k8s, file, old, new), r.bins), want)
		}
	}
	// Cases that need a binary need hello-listener and inventory, which exist.
	if r.bins["hello-listener"] == nil || r.bins["inventory"] == nil {
		t.Fatal("hello-listener and inventory binaries must load")
	}
	cases := map[string]func(*testing.T){
		"dockerfile final stage not distroless": dockerfile(hello, deploy.RuntimeImage, "alpine:3.20", "runtime stage FROM alpine"),
		"dockerfile runs as root":               dockerfile(hello, "USER 65532:65532", "USER 0:0", "USER 0 is root"),
		"dockerfile named user":                 dockerfile(hello, "USER 65532:65532", "USER nonroot", "numeric uid"),
		"dockerfile cgo":                        dockerfile(hello, "CGO_ENABLED=0 ", "", "CGO_ENABLED=0"),
		"dockerfile wrong main":                 dockerfile(hello, "./services/hello-listener/cmd/hello-listener", "./services/hello-listener/listener", "must build ./services/hello-listener/cmd/hello-listener"),
		"dockerfile wrong binary name":          dockerfile(hello, "-o /out/hello-listener", "-o /out/listener", "must write /out/hello-listener"),
		"dockerfile copy source missing":        dockerfile(hello, "COPY . .", "COPY go.work nonexistent/ ./", "nonexistent/ does not exist"),
		"dockerfile env not read":               dockerfile(hello, "OPS_ADDR=:9972", "OPS_ADDR=:9972 HELLO_ADRR=:9971", "ENV HELLO_ADRR"),
		"dockerfile exposes unknown port":       dockerfile(inv, "EXPOSE 8080", "EXPOSE 8080 9999", "EXPOSE 9999"),
		"dockerfile shell-form entrypoint":      dockerfile(inv, `ENTRYPOINT ["/usr/local/bin/inventory"]`, "ENTRYPOINT /usr/local/bin/inventory", "ENTRYPOINT"),
		"dockerfile single stage":               dockerfile(inv, "FROM "+deploy.RuntimeImage, "# no runtime stage", "multi-stage"),
		"dockerfile mount without syntax":       dockerfile(inv, "# syntax=docker/dockerfile:1\n", "", "needs BuildKit"),
		"dockerignore drops libs": func(t *testing.T) {
			files := mutate(t, r.files, ".dockerignore", "\ndocs\n", "\ndocs\nlibs\n")
			wantError(t, deploy.CheckDockerignore(r.root, files[".dockerignore"]), "excludes libs/go.mod")
		},
		"compose two nats nodes": compose("  nats-3:\n", "  nats-x:\n", "no service nats-3"),
		"compose root user":      compose(`user: "65532:65532"`, `user: "0:0"`, "non-root uid"),
		"compose env typo": compose(`      API_ADDR: ":8080"`, `      API_ADDR: ":8080"`+"\n      INVENTORY_BATCHSIZE: \"64\"",
			"INVENTORY_BATCHSIZE is never read"),
		"compose nats password missing": compose("  AMTPROV_NATS_PASS_SYS: ${AMTPROV_NATS_PASS_SYS:?run scripts/compose-env.sh > .env}\n", "",
			"reads $AMTPROV_NATS_PASS_SYS"),
		"compose service on one nats node": compose("hello-listener:${AMTPROV_NATS_PASS_HELLO_LISTENER}@nats-3:4222", "hello-listener:${AMTPROV_NATS_PASS_HELLO_LISTENER}@nats-2:4222", "NATS_URL must list nats-3"),
		"compose another user's password":  compose("certauthority:${AMTPROV_NATS_PASS_CERTAUTHORITY}@nats-1", "certauthority:${AMTPROV_NATS_PASS_OPS}@nats-1", "NATS_URL must list nats-1"),
		"compose healthy without healthcheck": compose("    healthcheck:\n      test: [\"CMD-SHELL\", \"pg_isready", "    x-healthcheck:\n      test: [\"CMD-SHELL\", \"pg_isready",
			"postgres has no healthcheck"),
		"k8s readiness path":            k8s("inventory.yaml", "path: /readyz", "path: /ready", "want /readyz"),
		"k8s liveness wrong port":       k8s("hello-listener.yaml", "livenessProbe:\n            httpGet: {path: /healthz, port: ops}", "livenessProbe:\n            httpGet: {path: /healthz, port: hello}", "livenessProbe port 9971"),
		"k8s writable root":             k8s("provisioner.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem"),
		"k8s no limits":                 k8s("discovery.yaml", `limits: {cpu: "1", memory: 256Mi}`, `limits: {cpu: "1"}`, "limits.memory"),
		"k8s real secret":               k8s("secrets.yaml", "AMTPROV_SECRET_KEYS: k1:REPLACE_ME", "AMTPROV_SECRET_KEYS: k1:c2VjcmV0", "not a REPLACE_ME placeholder"),
		"k8s missing secret key":        k8s("secrets.yaml", "  discovery: nats://discovery:", "  discover: nats://discovery:", "Secret amtprov-nats has no key discovery"),
		"k8s env typo":                  k8s("inventory.yaml", `- {name: API_ADDR, value: ":8080"}`, `- {name: API_ADDR, value: ":8080"}`+"\n            - {name: INVENTORY_WORKER, value: \"8\"}", "INVENTORY_WORKER is never read"),
		"k8s secret file not in secret": k8s("provisioner.yaml", "value: /etc/amtprov/secret-keys/AMTPROV_SECRET_KEYS}", "value: /etc/amtprov/secret-keys/keys}", "has no key keys"),
		"k8s shared nats user":          k8s("secrets.yaml", "  certauthority: nats://certauthority:", "  certauthority: nats://ops:", "the service's own NATS user"),
		"compose nats user unknown": func(t *testing.T) {
			root := copyTree(t, r.root, "deploy/nats", "deploy/jaeger")
			conf := filepath.Join(root, "deploy", "nats", "accounts.conf")
			files := mutate(t, map[string][]byte{"a": r.read(t, "deploy/nats/accounts.conf")}, "a", "user: inventory,", "user: inventory2,")
			if err := os.WriteFile(conf, files["a"], 0o600); err != nil {
				t.Fatal(err)
			}
			wantError(t, deploy.CheckCompose(root, r.files["docker-compose.yml"], r.bins), "no NATS user inventory with")
		},
		"k8s startup probe on readyz":  k8s("provisioner.yaml", "startupProbe:\n            httpGet: {path: /healthz", "startupProbe:\n            httpGet: {path: /readyz", "startupProbe path /readyz"),
		"k8s replicas under hpa":       k8s("provisioner.yaml", "  revisionHistoryLimit: 5\n", "  replicas: 3\n  revisionHistoryLimit: 5\n", "would reset"),
		"k8s no pdb":                   k8s("certauthority.yaml", "kind: PodDisruptionBudget", "kind: PodDisruptionBudgetX", "no PodDisruptionBudget"),
		"k8s hpa without lag":          k8s("provisioner-hpa.yaml", "name: amtprov_bus_consumer_lag", "name: nats_consumer_pending", "amtprov_bus_consumer_lag"),
		"k8s unlisted manifest":        k8s("kustomization.yaml", "  - discovery.yaml\n", "", "does not list discovery.yaml"),
		"k8s secrets in kustomization": k8s("kustomization.yaml", "  - config.yaml\n", "  - config.yaml\n  - secrets.yaml\n", "overwrite real secrets"),
		"nats values single node": func(t *testing.T) {
			files := mutate(t, r.files, "deploy/k8s/nats/values.yaml", "replicas: 3", "replicas: 1")
			wantError(t, deploy.CheckNATSValues(r.root, files["deploy/k8s/nats/values.yaml"]), "replicas must be 3")
		},
		"nats values password missing": func(t *testing.T) {
			files := mutate(t, r.files, "deploy/k8s/nats/values.yaml", "    AMTPROV_NATS_PASS_CLI:\n", "    AMTPROV_NATS_PASS_CLX:\n")
			wantError(t, deploy.CheckNATSValues(r.root, files["deploy/k8s/nats/values.yaml"]), "lacks AMTPROV_NATS_PASS_CLI")
		},
	}
	for name, tc := range cases {
		t.Run(name, tc)
	}
}

// copyTree copies the given directories of root into a new temporary root.
func copyTree(t *testing.T, root string, dirs ...string) string {
	t.Helper()
	dst := t.TempDir()
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, e os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if e.IsDir() {
				return os.MkdirAll(filepath.Join(dst, rel), 0o755)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
