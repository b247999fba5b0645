package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/amtprov/amtprov/deploy/internal/schemacheck"
)

// NATSNodes are the compose services of the NATS cluster.
var NATSNodes = []string{"nats-1", "nats-2", "nats-3"}

// CheckCompose holds docker-compose.yml (data) to the topology amtprov
// needs, beyond what the Compose schema checks: a 3-node NATS JetStream
// cluster on OPS's deploy/nats configuration with every password variable
// that configuration reads, PostgreSQL and Jaeger with the UI, every
// service image built from its Dockerfile with a replica count, non-root
// and read-only, starting after healthy dependencies (which therefore have
// healthchecks), connecting to all three NATS nodes as its own user, and
// setting only environment variables its binary reads. bins maps a binary
// name to what is known of it (nil until its main package exists).
func CheckCompose(root string, data []byte, bins map[string]*Binary) []error {
	docs, err := schemacheck.Documents(data)
	if err != nil {
		return []error{fmt.Errorf("docker-compose.yml: %w", err)}
	}
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("docker-compose.yml: "+format, a...))
	}
	top, _ := docs[0].(map[string]any)
	services, _ := top["services"].(map[string]any)
	if len(services) == 0 {
		return []error{fmt.Errorf("docker-compose.yml: no services")}
	}
	svc := func(name string) map[string]any {
		m, _ := services[name].(map[string]any)
		return m
	}

	// NATS: three JetStream nodes routed to each other, OPS's config.
	passVars, err := natsPasswordVars(root)
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range NATSNodes {
		s := svc(n)
		if s == nil {
			fail("no service %s (NATS cluster node)", n)
			continue
		}
		if img, _ := s["image"].(string); !strings.HasPrefix(img, "nats:") {
			fail("%s: image %q is not the official nats image", n, img)
		}
		cmd := strings.Join(strings2(s["command"]), " ")
		for _, want := range []string{"-c /etc/nats/cluster.conf", "-n " + n, "--cluster_name amtprov", "-sd /data", "-m 8222"} {
			if !strings.Contains(cmd, want) {
				fail("%s: command lacks %q", n, want)
			}
		}
		for _, peer := range NATSNodes {
			if peer != n && !strings.Contains(cmd, "nats://"+peer+":6222") {
				fail("%s: --routes lacks %s", n, peer)
			}
		}
		if !contains(strings2(s["volumes"]), "./deploy/nats:/etc/nats:ro") {
			fail("%s: must mount ./deploy/nats (OPS's cluster.conf and accounts.conf) at /etc/nats:ro", n)
		}
		env := mapKeys(s["environment"])
		for _, v := range passVars {
			if !env[v] {
				fail("%s: deploy/nats/accounts.conf reads $%s, which the container does not get", n, v)
			}
		}
	}
	if s := svc("postgres"); s == nil {
		fail("no service postgres")
	} else if img, _ := s["image"].(string); !strings.HasPrefix(img, "postgres:") {
		fail("postgres: image %q", img)
	}
	if s := svc("jaeger"); s == nil {
		fail("no service jaeger")
	} else {
		if img, _ := s["image"].(string); !strings.HasPrefix(img, "jaegertracing/") {
			fail("jaeger: image %q", img)
		}
		if !containsSuffix(strings2(s["ports"]), ":16686") {
			fail("jaeger: the UI port 16686 is not published")
		}
	}

	// Every mounted host path exists.
	names := make([]string, 0, len(services))
	for name := range services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s := svc(name)
		for _, v := range strings2(s["volumes"]) {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					fail("%s: volume source %s does not exist", name, src)
				}
			}
		}
		// depends_on: healthy means the dependency has a healthcheck.
		if deps, ok := s["depends_on"].(map[string]any); ok {
			for dep, c := range deps {
				cond, _ := c.(map[string]any)["condition"].(string)
				if cond == "service_healthy" && svc(dep)["healthcheck"] == nil {
					fail("%s: waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
				}
				if svc(dep) == nil {
					fail("%s: depends on unknown service %s", name, dep)
				}
			}
		}
	}

	// amtprov services.
	users, err := natsUsers(root)
	if err != nil {
		errs = append(errs, err)
	}
	for _, im := range Images {
		if !im.Service {
			continue
		}
		s := svc(im.Binary)
		if s == nil {
			fail("no service %s", im.Binary)
			continue
		}
		build, _ := s["build"].(map[string]any)
		if c, _ := build["context"].(string); c != "." {
			fail("%s: build context %q, want \".\" (the workspace)", im.Binary, c)
		}
		if d, _ := build["dockerfile"].(string); d != im.Dockerfile {
			fail("%s: build dockerfile %q, want %s", im.Binary, d, im.Dockerfile)
		}
		dep, _ := s["deploy"].(map[string]any)
		if r, ok := num(dep["replicas"]); !ok || r < 1 {
			fail("%s: deploy.replicas must be a number >= 1", im.Binary)
		}
		if u, _ := s["user"].(string); u == "" || strings.HasPrefix(u, "0:") || u == "0" || u == "root" {
			fail("%s: user %q: run as the image's non-root uid", im.Binary, u)
		}
		if ro, _ := s["read_only"].(bool); !ro {
			fail("%s: read_only must be true", im.Binary)
		}
		deps, _ := s["depends_on"].(map[string]any)
		for _, n := range NATSNodes {
			c, _ := deps[n].(map[string]any)
			if cond, _ := c["condition"].(string); cond != "service_healthy" {
				fail("%s: must wait for %s to be healthy", im.Binary, n)
			}
		}
		env, _ := s["environment"].(map[string]any)
		if list, ok := s["environment"].([]any); ok {
			env = map[string]any{}
			for _, kv := range list {
				k, v, _ := strings.Cut(fmt.Sprint(kv), "=")
				env[k] = v
			}
		}
		if _, ok := env["DATABASE_URL"]; ok {
			c, _ := deps["postgres"].(map[string]any)
			if cond, _ := c["condition"].(string); cond != "service_healthy" {
				fail("%s: uses DATABASE_URL but does not wait for postgres to be healthy", im.Binary)
			}
		}
		passVar, ok := users[im.Binary]
		if users != nil && (!ok || passVar == "") {
			fail("%s: deploy/nats/accounts.conf has no NATS user %s with a $VARIABLE password", im.Binary, im.Binary)
		}
		url, _ := env["NATS_URL"].(string)
		for _, n := range NATSNodes {
			want := "nats://" + im.Binary + ":${" + passVar + "}@" + n + ":4222"
			if !strings.Contains(url, want) {
				fail("%s: NATS_URL must list %s as the service's own user: %s", im.Binary, n, want)
			}
		}
		if b := bins[im.Binary]; b != nil {
			keys := make([]string, 0, len(env))
			for k := range env {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if !b.Reads(k) {
					fail("%s: environment %s is never read by the %s binary", im.Binary, k, im.Binary)
				}
			}
		}
	}
	return errs
}

// natsUsers maps each user OPS's deploy/nats/accounts.conf defines to the
// variable its password comes from ("" when the password is not a variable).
func natsUsers(root string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(root, "deploy", "nats", "accounts.conf"))
	if err != nil {
		return nil, fmt.Errorf("NATS accounts: %w", err)
	}
	users := map[string]string{}
	re := regexp.MustCompile(`\buser:\s*"?([A-Za-z0-9_-]+)"?\s*,?\s*(?:password:\s*\$([A-Z0-9_]+))?`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		users[m[1]] = m[2]
	}
	return users, nil
}

// natsPasswordVars lists the $AMTPROV_NATS_PASS_* variables OPS's
// deploy/nats/accounts.conf reads.
func natsPasswordVars(root string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(root, "deploy", "nats", "accounts.conf"))
	if err != nil {
		return nil, fmt.Errorf("NATS accounts: %w", err)
	}
	seen := map[string]bool{}
	var vars []string
	for _, m := range regexp.MustCompile(`\$([A-Z][A-Z0-9_]*)`).FindAllStringSubmatch(string(b), -1) {
		if strings.HasPrefix(m[1], "AMTPROV_") && !seen[m[1]] {
			seen[m[1]] = true
			vars = append(vars, m[1])
		}
	}
	if len(vars) == 0 {
		return nil, fmt.Errorf("NATS accounts: deploy/nats/accounts.conf reads no $AMTPROV_* password")
	}
	sort.Strings(vars)
	return vars, nil
}

// strings2 returns the string elements of a YAML list (or a lone string).
func strings2(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func mapKeys(v any) map[string]bool {
	out := map[string]bool{}
	switch t := v.(type) {
	case map[string]any:
		for k := range t {
			out[k] = true
		}
	case []any:
		for _, e := range t {
			k, _, _ := strings.Cut(fmt.Sprint(e), "=")
			out[k] = true
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func containsSuffix(list []string, suffix string) bool {
	for _, e := range list {
		if strings.HasSuffix(e, suffix) {
			return true
		}
	}
	return false
}
