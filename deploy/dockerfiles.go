package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/amtprov/amtprov/deploy/internal/dockerfile"
)

// Base images the Dockerfiles must use.
const (
	BuildImage   = "golang:1.26"
	RuntimeImage = "gcr.io/distroless/static-debian12:nonroot"
)

// CheckDockerfile holds the Dockerfile data of im to the rules in the
// README "Containers" section: multi-stage, a static (CGO_ENABLED=0) build of
// im.Main in the workspace on golang:1.26, a distroless-static or scratch
// final stage running as a non-root numeric user, the binary copied from the
// build stage under its own name and used as the entrypoint, every ENV one
// the binary reads and every EXPOSEd port one it listens on. bin may be nil
// when the main package does not exist yet; the checks that need it are
// then skipped. root is the build context (the repository root).
func CheckDockerfile(root string, im Image, data []byte, bin *Binary) []error {
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{im.Dockerfile}, a...)...))
	}
	df, err := dockerfile.Parse(bytes.NewReader(data))
	if err != nil {
		return []error{fmt.Errorf("%s: %w", im.Dockerfile, err)}
	}
	if len(df.Stages) < 2 {
		fail("want a multi-stage build (build, then runtime), have %d stage(s)", len(df.Stages))
		return errs
	}

	// Build stage.
	build := &df.Stages[0]
	if build.Image != BuildImage && !strings.HasPrefix(build.Image, BuildImage+"-") {
		fail("build stage FROM %s, want %s", build.Image, BuildImage)
	}
	if build.Name == "" {
		fail("build stage has no name (FROM %s AS build)", build.Image)
	}
	for _, cp := range build.All("COPY") {
		if _, ok := cp.Flags["from"]; ok {
			continue
		}
		if len(cp.Args) < 2 {
			fail("line %d: COPY needs a source and a destination", cp.Line)
			continue
		}
		for _, src := range cp.Args[:len(cp.Args)-1] {
			if matches, _ := filepath.Glob(filepath.Join(root, src)); len(matches) == 0 {
				fail("line %d: COPY source %s does not exist in the build context", cp.Line, src)
			}
		}
	}
	out := "/out/" + im.Binary
	built := false
	for _, run := range build.All("RUN") {
		if !strings.Contains(run.Raw, "go build") {
			continue
		}
		built = true
		if _, ok := run.Flags["mount"]; ok && df.Directives["syntax"] == "" {
			fail("line %d: RUN --mount needs BuildKit: start the file with # syntax=docker/dockerfile:1", run.Line)
		}
		if !regexp.MustCompile(`(^|\s)CGO_ENABLED=0\s`).MatchString(run.Raw) && build.Env()["CGO_ENABLED"] != "0" {
			fail("line %d: go build without CGO_ENABLED=0 (the runtime image has no libc)", run.Line)
		}
		if !strings.Contains(run.Raw, "-o "+out+" ") {
			fail("line %d: go build must write %s", run.Line, out)
		}
		if !strings.HasSuffix(strings.TrimSpace(run.Raw), " ./"+im.Main) {
			fail("line %d: go build must build ./%s (the binary's main package)", run.Line, im.Main)
		}
	}
	if !built {
		fail("build stage has no RUN ... go build")
	}
	if path.Base(im.Main) != im.Binary {
		fail("binary %s is not named after its main package directory %s", im.Binary, im.Main)
	}

	// Runtime stage.
	final := df.Final()
	if final.Image != RuntimeImage && final.Image != "scratch" {
		fail("runtime stage FROM %s, want %s or scratch", final.Image, RuntimeImage)
	}
	users := final.All("USER")
	if len(users) == 0 {
		fail("runtime stage has no USER (run as non-root)")
	} else {
		u := users[len(users)-1]
		uid, _, _ := strings.Cut(strings.Join(u.Args, ""), ":")
		n, err := strconv.Atoi(uid)
		switch {
		case err != nil:
			fail("line %d: USER %s: use a numeric uid (Kubernetes runAsNonRoot cannot verify a name)", u.Line, uid)
		case n == 0:
			fail("line %d: USER 0 is root", u.Line)
		}
	}
	target := "/usr/local/bin/" + im.Binary
	copied := false
	for _, cp := range final.All("COPY") {
		from, ok := cp.Flags["from"]
		if !ok || len(cp.Args) != 2 {
			continue
		}
		if from == build.Name && cp.Args[0] == out && cp.Args[1] == target {
			copied = true
		}
	}
	if !copied {
		fail("runtime stage must COPY --from=%s %s %s", build.Name, out, target)
	}
	eps := final.All("ENTRYPOINT")
	if len(eps) != 1 || !eps[0].JSON || len(eps[0].Args) == 0 || eps[0].Args[0] != target {
		fail(`runtime stage needs exactly one ENTRYPOINT ["%s"] (exec form)`, target)
	}
	env := final.Env()
	var cmdArgs []string
	for _, c := range final.All("CMD") {
		cmdArgs = c.Args
	}
	exposed := 0
	for _, ex := range final.All("EXPOSE") {
		for _, p := range ex.Args {
			exposed++
			port, _, _ := strings.Cut(p, "/")
			if _, err := strconv.Atoi(port); err != nil {
				fail("line %d: EXPOSE %s is not a port", ex.Line, p)
				continue
			}
			if !setsPort(env, cmdArgs, port) && (bin == nil || !bin.Listens(port)) {
				fail("line %d: EXPOSE %s: neither an ENV/CMD address nor a default address of %s uses that port", ex.Line, p, im.Binary)
			}
		}
	}
	if im.Service && exposed == 0 {
		fail("a service image must EXPOSE its ops port (/healthz, /readyz, /metrics)")
	}
	if bin != nil {
		for k := range env {
			if !bin.Reads(k) {
				fail("ENV %s: %s never reads it", k, im.Binary)
			}
		}
	}
	return errs
}

func setsPort(env map[string]string, args []string, port string) bool {
	for _, v := range env {
		if strings.HasSuffix(v, ":"+port) {
			return true
		}
	}
	for _, a := range args {
		if strings.HasSuffix(a, ":"+port) {
			return true
		}
	}
	return false
}

// WorkspaceDirs returns the directories the go.work at root uses.
func WorkspaceDirs(root string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		return nil, fmt.Errorf("read go.work: %w", err)
	}
	var dirs []string
	inUse := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		switch {
		case line == "use (":
			inUse = true
		case inUse && line == ")":
			inUse = false
		case inUse && line != "":
			dirs = append(dirs, path.Clean(strings.Trim(line, `"`)))
		case strings.HasPrefix(line, "use "):
			dirs = append(dirs, path.Clean(strings.Trim(strings.TrimSpace(strings.TrimPrefix(line, "use ")), `"`)))
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("go.work uses no module")
	}
	return dirs, nil
}

// CheckDockerignore makes sure the .dockerignore at root keeps in the build
// context everything `go build` needs in workspace mode: go.work and every
// module it uses (their go.mod and sources).
func CheckDockerignore(root string, data []byte) []error {
	ig, err := dockerfile.ParseIgnore(bytes.NewReader(data))
	if err != nil {
		return []error{fmt.Errorf(".dockerignore: %w", err)}
	}
	dirs, err := WorkspaceDirs(root)
	if err != nil {
		return []error{err}
	}
	var errs []error
	need := []string{"go.work"}
	for _, d := range dirs {
		need = append(need, path.Join(d, "go.mod"), path.Join(d, "doc.go"))
	}
	for _, im := range Images {
		need = append(need, path.Join(im.Main, "main.go"))
	}
	for _, p := range need {
		if ig.Excludes(p) {
			errs = append(errs, fmt.Errorf(".dockerignore excludes %s, which the workspace build needs", p))
		}
	}
	return errs
}
