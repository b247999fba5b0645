package deploy

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/amtprov/amtprov/deploy/internal/schemacheck"
)

// Placeholder is the only value deploy/k8s/secrets.yaml may hold.
const Placeholder = "REPLACE_ME"

// SecretsFile is the manifest of Secret templates, applied by hand and so
// left out of the kustomization.
const SecretsFile = "secrets.yaml"

// object is one Kubernetes manifest document.
type object struct {
	file string
	m    map[string]any
}

func (o object) kind() string { s, _ := o.m["kind"].(string); return s }
func (o object) name() string { s, _ := get(o.m, "metadata", "name").(string); return s }

// CheckKubernetes holds the manifests of deploy/k8s (files: path → content,
// kustomization.yaml among them) to what amtprov needs beyond the schema:
// every service a Deployment running its image as non-root on a read-only
// root file system with requests and limits, readiness on /readyz and
// liveness on /healthz at the port the binary serves them on, only
// environment variables the binary reads, every referenced ConfigMap,
// Secret and key present, a Service and a PodDisruptionBudget selecting its
// pods, the provisioner's HorizontalPodAutoscaler on CPU and consumer lag,
// secrets only as placeholders, and the kustomization listing exactly the
// manifests.
func CheckKubernetes(files map[string][]byte, bins map[string]*Binary) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf("deploy/k8s: "+format, a...)) }

	var objs []object
	var kust map[string]any
	names := make([]string, 0, len(files))
	for f := range files {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		docs, err := schemacheck.Documents(files[f])
		if err != nil {
			errs = append(errs, fmt.Errorf("deploy/k8s/%s: %w", f, err))
			continue
		}
		if f == "kustomization.yaml" {
			kust, _ = docs[0].(map[string]any)
			continue
		}
		for _, d := range docs {
			m, ok := d.(map[string]any)
			if !ok {
				fail("%s: a document is not an object", f)
				continue
			}
			objs = append(objs, object{file: f, m: m})
		}
	}
	find := func(kind, name string) map[string]any {
		for _, o := range objs {
			if o.kind() == kind && o.name() == name {
				return o.m
			}
		}
		return nil
	}

	// Kustomization lists every manifest file, and only existing ones.
	if kust == nil {
		fail("no kustomization.yaml")
	} else {
		listed := map[string]bool{}
		for _, r := range strings2(kust["resources"]) {
			listed[r] = true
			if _, ok := files[r]; !ok {
				fail("kustomization.yaml lists %s, which does not exist", r)
			}
		}
		for _, f := range names {
			switch {
			case f == SecretsFile && listed[f]:
				fail("kustomization.yaml lists %s: re-applying would overwrite real secrets with placeholders", f)
			case f != "kustomization.yaml" && f != SecretsFile && !listed[f]:
				fail("kustomization.yaml does not list %s", f)
			}
		}
	}

	// Secrets are templates.
	for _, o := range objs {
		if o.kind() != "Secret" {
			continue
		}
		for _, field := range []string{"stringData", "data"} {
			data, _ := o.m[field].(map[string]any)
			for k, v := range data {
				if s, _ := v.(string); !strings.Contains(s, Placeholder) {
					fail("%s: Secret %s key %s holds a value that is not a %s placeholder", o.file, o.name(), k, Placeholder)
				}
			}
		}
	}

	for _, im := range Images {
		if !im.Service {
			continue
		}
		d := find("Deployment", im.Binary)
		if d == nil {
			fail("no Deployment %s", im.Binary)
			continue
		}
		errs = append(errs, checkDeployment(im, d, objs, find, bins[im.Binary])...)
		// Its NATS URL logs in as its own user (deploy/nats/accounts.conf).
		if u, _ := get(find("Secret", "amtprov-nats"), "stringData", im.Binary).(string); !strings.HasPrefix(u, "nats://"+im.Binary+":") {
			fail("Secret amtprov-nats key %s must be nats://%s:<password>@..., the service's own NATS user", im.Binary, im.Binary)
		}
	}

	// Provisioner autoscaling: CPU and consumer lag.
	hpa := find("HorizontalPodAutoscaler", "provisioner")
	if hpa == nil {
		fail("no HorizontalPodAutoscaler provisioner")
	} else {
		if k, _ := get(hpa, "spec", "scaleTargetRef", "kind").(string); k != "Deployment" ||
			get(hpa, "spec", "scaleTargetRef", "name") != "provisioner" {
			fail("HorizontalPodAutoscaler provisioner must scale Deployment provisioner")
		}
		if d := find("Deployment", "provisioner"); get(d, "spec", "replicas") != nil {
			fail("Deployment provisioner sets spec.replicas, which every apply would reset under its HorizontalPodAutoscaler")
		}
		var cpu, lag bool
		metrics, _ := get(hpa, "spec", "metrics").([]any)
		for _, m := range metrics {
			mm, _ := m.(map[string]any)
			switch mm["type"] {
			case "Resource":
				cpu = cpu || get(mm, "resource", "name") == "cpu"
			case "External":
				name, _ := get(mm, "external", "metric", "name").(string)
				lag = lag || name == "amtprov_bus_consumer_lag" &&
					get(mm, "external", "metric", "selector", "matchLabels", "consumer") == "provisioner"
			}
		}
		if !cpu {
			fail("HorizontalPodAutoscaler provisioner has no CPU metric")
		}
		if !lag {
			fail(`HorizontalPodAutoscaler provisioner has no External metric amtprov_bus_consumer_lag{consumer="provisioner"}`)
		}
	}
	return errs
}

func checkDeployment(im Image, d map[string]any, objs []object, find func(kind, name string) map[string]any, bin *Binary) []error {
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("deploy/k8s: Deployment %s: "+format, append([]any{im.Binary}, a...)...))
	}
	podLabels, _ := get(d, "spec", "template", "metadata", "labels").(map[string]any)
	if !selects(get(d, "spec", "selector", "matchLabels"), podLabels) {
		fail("spec.selector does not match the pod template's labels")
	}
	pod, _ := get(d, "spec", "template", "spec").(map[string]any)
	if get(pod, "securityContext", "runAsNonRoot") != true {
		fail("pod securityContext.runAsNonRoot must be true")
	}
	if uid, ok := num(get(pod, "securityContext", "runAsUser")); ok && uid == 0 {
		fail("pod securityContext.runAsUser is 0 (root)")
	}
	containers, _ := pod["containers"].([]any)
	var c map[string]any
	for _, e := range containers {
		if m, _ := e.(map[string]any); m["name"] == im.Binary {
			c = m
		}
	}
	if c == nil {
		fail("no container named %s", im.Binary)
		return errs
	}
	if img, _ := c["image"].(string); !strings.HasPrefix(img, "amtprov/"+im.Binary+":") {
		fail("container image %q is not amtprov/%s:<tag> (built from %s)", img, im.Binary, im.Dockerfile)
	}
	sc, _ := c["securityContext"].(map[string]any)
	if sc["readOnlyRootFilesystem"] != true {
		fail("container securityContext.readOnlyRootFilesystem must be true")
	}
	if sc["allowPrivilegeEscalation"] != false {
		fail("container securityContext.allowPrivilegeEscalation must be false")
	}
	if drop := strings2(get(sc, "capabilities", "drop")); !contains(drop, "ALL") {
		fail("container must drop ALL capabilities")
	}
	for _, kind := range []string{"requests", "limits"} {
		for _, r := range []string{"cpu", "memory"} {
			if get(c, "resources", kind, r) == nil {
				fail("container resources.%s.%s is not set", kind, r)
			}
		}
	}

	// Environment: what the container gets, and that its binary reads it.
	env := map[string]string{} // name → literal value ("" when from a reference)
	for _, e := range asList(c["env"]) {
		name, _ := e["name"].(string)
		v, _ := e["value"].(string)
		env[name] = v
		if ref, ok := get(e, "valueFrom", "secretKeyRef").(map[string]any); ok {
			if !hasKey(find("Secret", str(ref["name"])), str(ref["key"])) {
				fail("env %s: Secret %s has no key %s", name, ref["name"], ref["key"])
			}
		}
		if ref, ok := get(e, "valueFrom", "configMapKeyRef").(map[string]any); ok {
			if !hasKey(find("ConfigMap", str(ref["name"])), str(ref["key"])) {
				fail("env %s: ConfigMap %s has no key %s", name, ref["name"], ref["key"])
			}
		}
	}
	for _, e := range asList(c["envFrom"]) {
		if ref, ok := e["configMapRef"].(map[string]any); ok {
			cm := find("ConfigMap", str(ref["name"]))
			if cm == nil {
				fail("envFrom: no ConfigMap %s", ref["name"])
				continue
			}
			data, _ := cm["data"].(map[string]any)
			for k, v := range data {
				if _, set := env[k]; !set {
					env[k] = str(v)
				}
			}
		}
		if ref, ok := e["secretRef"].(map[string]any); ok {
			sec := find("Secret", str(ref["name"]))
			if sec == nil {
				fail("envFrom: no Secret %s", ref["name"])
				continue
			}
			data, _ := sec["stringData"].(map[string]any)
			for k := range data {
				env[k] = ""
			}
		}
	}
	if bin != nil {
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !bin.Reads(k) {
				fail("env %s is never read by the %s binary", k, im.Binary)
			}
		}
	}

	// Volumes: mounted ones exist, secret ones reference existing Secrets.
	vols := map[string]bool{}
	for _, v := range asList(pod["volumes"]) {
		vols[str(v["name"])] = true
		if s, ok := v["secret"].(map[string]any); ok && find("Secret", str(s["secretName"])) == nil {
			fail("volume %s: no Secret %s", v["name"], s["secretName"])
		}
	}
	secretMounts := map[string]map[string]any{} // mountPath → Secret
	for _, m := range asList(c["volumeMounts"]) {
		if !vols[str(m["name"])] {
			fail("volumeMount %s: no such volume", m["name"])
		}
		for _, v := range asList(pod["volumes"]) {
			if v["name"] == m["name"] {
				if sv, ok := v["secret"].(map[string]any); ok {
					secretMounts[str(m["mountPath"])] = find("Secret", str(sv["secretName"]))
				}
			}
		}
	}
	// A *_FILE variable pointing into a mounted Secret names one of its keys.
	for name, v := range env {
		if !strings.HasSuffix(name, "_FILE") {
			continue
		}
		sec, ok := secretMounts[path.Dir(v)]
		if !ok {
			fail("env %s=%s: no Secret is mounted at %s", name, v, path.Dir(v))
			continue
		}
		if !hasKey(sec, path.Base(v)) {
			fail("env %s=%s: the Secret mounted at %s has no key %s", name, v, path.Dir(v), path.Base(v))
		}
	}

	// Ports and probes.
	ports := map[string]string{} // name → number, and number → number
	for _, p := range asList(c["ports"]) {
		n, _ := num(p["containerPort"])
		s := strconv.Itoa(int(n))
		ports[s] = s
		if name, ok := p["name"].(string); ok {
			ports[name] = s
		}
	}
	for _, pr := range []struct{ field, path string }{{"readinessProbe", "/readyz"}, {"livenessProbe", "/healthz"}, {"startupProbe", "/healthz"}} {
		hg, _ := get(c, pr.field, "httpGet").(map[string]any)
		if pr.field == "startupProbe" && c[pr.field] == nil {
			continue // optional
		}
		if hg == nil {
			fail("%s must be an httpGet on %s", pr.field, pr.path)
			continue
		}
		if hg["path"] != pr.path {
			fail("%s path %v, want %s", pr.field, hg["path"], pr.path)
		}
		port, ok := ports[portKey(hg["port"])]
		if !ok {
			fail("%s port %v is not a containerPort", pr.field, hg["port"])
			continue
		}
		if !servesOps(env, port, bin) {
			fail("%s port %s is not where %s serves /healthz and /readyz (OPS_ADDR or API_ADDR, else the binary's default)", pr.field, port, im.Binary)
		}
	}

	// A Service and a PodDisruptionBudget select the pods.
	var hasSvc, hasPDB bool
	for _, o := range objs {
		switch o.kind() {
		case "Service":
			if !selects(get(o.m, "spec", "selector"), podLabels) {
				continue
			}
			hasSvc = true
			for _, p := range asList(get(o.m, "spec", "ports")) {
				if _, ok := ports[portKey(p["targetPort"])]; !ok {
					errs = append(errs, fmt.Errorf("deploy/k8s: Service %s: targetPort %v is not a containerPort of %s", o.name(), p["targetPort"], im.Binary))
				}
			}
		case "PodDisruptionBudget":
			hasPDB = hasPDB || selects(get(o.m, "spec", "selector", "matchLabels"), podLabels)
		}
	}
	if !hasSvc {
		fail("no Service selects its pods")
	}
	if !hasPDB {
		fail("no PodDisruptionBudget selects its pods")
	}
	return errs
}

// CheckNATSValues holds deploy/k8s/nats/values.yaml (values of the official
// NATS Helm chart) to a 3-node JetStream cluster that includes OPS's
// deploy/nats/accounts.conf and passes in every password it reads.
func CheckNATSValues(root string, data []byte) []error {
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("deploy/k8s/nats/values.yaml: "+format, a...))
	}
	docs, err := schemacheck.Documents(data)
	if err != nil {
		return []error{fmt.Errorf("deploy/k8s/nats/values.yaml: %w", err)}
	}
	v, _ := docs[0].(map[string]any)
	if get(v, "config", "cluster", "enabled") != true {
		fail("config.cluster.enabled must be true")
	}
	if n, _ := num(get(v, "config", "cluster", "replicas")); n != 3 {
		fail("config.cluster.replicas must be 3")
	}
	if get(v, "config", "jetstream", "enabled") != true || get(v, "config", "jetstream", "fileStore", "pvc", "enabled") != true {
		fail("config.jetstream with a file store on a PVC must be enabled")
	}
	inc, _ := get(v, "config", "merge", "$include").(string)
	if path.Base(inc) != "accounts.conf" {
		fail("config.merge.$include must include deploy/nats/accounts.conf, have %q", inc)
	}
	vars, err := natsPasswordVars(root)
	if err != nil {
		errs = append(errs, err)
	}
	env, _ := get(v, "container", "env").(map[string]any)
	for _, pv := range vars {
		if env[pv] == nil {
			fail("container.env lacks %s, which deploy/nats/accounts.conf reads", pv)
		}
	}
	return errs
}

// servesOps reports whether port is the ops port: the one OPS_ADDR or
// API_ADDR sets, or, when neither is set, one the binary listens on by
// default.
func servesOps(env map[string]string, port string, bin *Binary) bool {
	set := false
	for _, k := range []string{"OPS_ADDR", "API_ADDR"} {
		if v, ok := env[k]; ok && v != "" {
			set = true
			if strings.HasSuffix(v, ":"+port) {
				return true
			}
		}
	}
	return !set && bin != nil && bin.Listens(port)
}

func portKey(v any) string {
	if n, ok := num(v); ok {
		return strconv.Itoa(int(n))
	}
	return str(v)
}

// selects reports whether every label of the selector is on the pod.
func selects(selector any, labels map[string]any) bool {
	sel, _ := selector.(map[string]any)
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func hasKey(obj map[string]any, key string) bool {
	for _, field := range []string{"data", "stringData"} {
		if m, ok := obj[field].(map[string]any); ok {
			if _, ok := m[key]; ok {
				return true
			}
		}
	}
	return false
}

// get walks nested maps; nil when a step is missing.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func asList(v any) []map[string]any {
	l, _ := v.([]any)
	out := make([]map[string]any, 0, len(l))
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func str(v any) string { s, _ := v.(string); return s }

// num reads a JSON number as decoded by schemacheck.Documents.
func num(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case int:
		return float64(n), true
	}
	return 0, false
}
