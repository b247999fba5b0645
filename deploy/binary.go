package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Image is one container image: the binary it ships and where it is built.
type Image struct {
	Binary     string // file name of the binary, = base name of Main
	Dockerfile string // relative to the repository root
	Main       string // main package directory, relative to the repository root
	// Service marks a long-running service (compose service, Kubernetes
	// Deployment with probes); the simulator and the CLI are not.
	Service bool
}

// Images are every image amtprov ships. CheckMains makes sure no service
// main package is missing from this table.
var Images = []Image{
	{"hello-listener", "services/hello-listener/Dockerfile", "services/hello-listener/cmd/hello-listener", true},
	{"inventory", "services/inventory/Dockerfile", "services/inventory/cmd/inventory", true},
	{"provisioner", "services/provisioner/Dockerfile", "services/provisioner/cmd/provisioner", true},
	{"certauthority", "services/certauthority/Dockerfile", "services/certauthority/cmd/certauthority", true},
	{"discovery", "services/discovery/Dockerfile", "services/discovery/cmd/discovery", true},
	{"amtsim", "tools/amtsim/Dockerfile", "tools/amtsim/cmd/amtsim", false},
	{"amtprov", "cmd/amtprov/Dockerfile", "cmd/amtprov", false},
}

// ImageFor returns the image of binary, or false.
func ImageFor(binary string) (Image, bool) {
	for _, im := range Images {
		if im.Binary == binary {
			return im, true
		}
	}
	return Image{}, false
}

// Binary is what the checks need to know about a main package: the Go
// source of every package of this repository it links (to tell which
// environment variables it can read).
type Binary struct {
	Image   Image
	sources [][]byte
	deps    map[string]bool // import paths
}

// HasMain reports whether dir (relative to root) holds a non-test Go file
// of package main.
func HasMain(root, dir string) bool {
	files, _ := filepath.Glob(filepath.Join(root, dir, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err == nil && packageMain.Match(b) {
			return true
		}
	}
	return false
}

var packageMain = regexp.MustCompile(`(?m)^package main\s*$`)

// LoadBinaries asks the go command (workspace mode, at root, as a static
// CGO_ENABLED=0 linux build would see it) for the packages each image's main
// links, in one call, and reads the sources of those inside the repository.
// Images whose main package does not exist yet are left out of the map; a
// main that does not resolve (missing import, syntax error) is an error: its
// image would not build.
func LoadBinaries(ctx context.Context, root string, images []Image) (map[string]*Binary, error) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("load binaries: %w", err)
	}
	var mains []string
	for _, im := range images {
		if HasMain(root, im.Main) {
			mains = append(mains, "./"+im.Main)
		}
	}
	bins := map[string]*Binary{}
	if len(mains) == 0 {
		return bins, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	args := append([]string{"list", "-deps", "-e", "-f",
		"{{.ImportPath}}\t{{.Dir}}\t{{.Name}}\t{{join .GoFiles \",\"}}\t{{if .Error}}{{.Error}}{{end}}\t{{join .Deps \" \"}}\t{{.DepOnly}}"},
		mains...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-mod=readonly", "GOWORK="+filepath.Join(absRoot, "go.work"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w: %s", strings.Join(mains, " "), err, strings.TrimSpace(stderr.String()))
	}
	type pkg struct {
		dir, name, err string
		files, deps    []string
	}
	pkgs := map[string]pkg{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 7 {
			return nil, fmt.Errorf("go list: unexpected line %q", line)
		}
		p := pkg{dir: f[1], name: f[2], err: f[4], deps: strings.Fields(f[5])}
		if f[3] != "" {
			p.files = strings.Split(f[3], ",")
		}
		pkgs[f[0]] = p
	}
	for _, im := range images {
		if !HasMain(root, im.Main) {
			continue
		}
		dir := filepath.Join(absRoot, im.Main)
		var mainPath string
		for path, p := range pkgs {
			if p.dir == dir {
				mainPath = path
			}
		}
		if mainPath == "" {
			return nil, fmt.Errorf("%s: go list did not report %s", im.Binary, im.Main)
		}
		b := &Binary{Image: im, deps: map[string]bool{mainPath: true}}
		var problems []string
		if pkgs[mainPath].name != "main" {
			problems = append(problems, fmt.Sprintf("%s is package %s, not main", im.Main, pkgs[mainPath].name))
		}
		for _, path := range append([]string{mainPath}, pkgs[mainPath].deps...) {
			p := pkgs[path]
			b.deps[path] = true
			if p.err != "" {
				problems = append(problems, path+": "+p.err)
			}
			if !strings.HasPrefix(p.dir, absRoot+string(filepath.Separator)) {
				continue
			}
			for _, file := range p.files {
				src, err := os.ReadFile(filepath.Join(p.dir, file))
				if err != nil {
					return nil, fmt.Errorf("%s: %w", im.Binary, err)
				}
				b.sources = append(b.sources, src)
			}
		}
		if len(problems) > 0 {
			return nil, fmt.Errorf("%s: %s does not build: %s", im.Binary, im.Main, strings.Join(problems, "; "))
		}
		bins[im.Binary] = b
	}
	return bins, nil
}

// Reads reports whether the binary can read environment variable key:
// it appears as a string literal in the repository code it links, or it is
// one that a linked library reads by convention (OTEL_* through
// libs/telemetry's OpenTelemetry SDK, GO* through the Go runtime).
func (b *Binary) Reads(key string) bool {
	switch {
	case strings.HasPrefix(key, "OTEL_"):
		return b.deps["github.com/amtprov/amtprov/libs/telemetry"]
	case key == "GOMAXPROCS" || key == "GOMEMLIMIT" || key == "GODEBUG" || key == "GOGC":
		return true
	}
	lit := []byte(`"` + key + `"`)
	for _, src := range b.sources {
		if bytes.Contains(src, lit) {
			return true
		}
	}
	return false
}

// Listens reports whether port appears as a default listen address
// (":PORT" or "host:PORT" string literal) in the binary's code.
func (b *Binary) Listens(port string) bool {
	re := regexp.MustCompile(`"[0-9a-zA-Z.\[\]:]*:` + regexp.QuoteMeta(port) + `"`)
	for _, src := range b.sources {
		if re.Match(src) {
			return true
		}
	}
	return false
}
