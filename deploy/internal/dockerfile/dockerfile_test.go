package dockerfile_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/amtprov/amtprov/deploy/internal/dockerfile"
)

func TestParse(t *testing.T) {
	const src = `# syntax=docker/dockerfile:1
# a comment that ends the directives
ARG GO=1.26
FROM golang:1.26 AS build
WORKDIR /src
RUN --mount=type=cache,target=/root/.cache/go-build \
    # a comment inside a continuation
    CGO_ENABLED=0 go build -o /out/x ./cmd/x

FROM scratch
COPY --from=build /out/x /x
ENV A=1 B="two"
ENV LEGACY value with spaces
EXPOSE 80 443/tcp
USER 65532:65532
ENTRYPOINT ["/x", "--flag"]
`
	f, err := dockerfile.Parse(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Directives["syntax"]; got != "docker/dockerfile:1" {
		t.Errorf("syntax directive %q", got)
	}
	if len(f.Stages) != 2 {
		t.Fatalf("%d stages, want 2", len(f.Stages))
	}
	build := f.Stage("build")
	if build == nil || build.Image != "golang:1.26" {
		t.Fatalf("build stage %+v", build)
	}
	runs := build.All("RUN")
	if len(runs) != 1 {
		t.Fatalf("%d RUN, want 1", len(runs))
	}
	if runs[0].Flags["mount"] != "type=cache,target=/root/.cache/go-build" {
		t.Errorf("RUN flags %v", runs[0].Flags)
	}
	if want := []string{"CGO_ENABLED=0", "go", "build", "-o", "/out/x", "./cmd/x"}; !reflect.DeepEqual(runs[0].Args, want) {
		t.Errorf("RUN args %q, want %q", runs[0].Args, want)
	}
	if runs[0].Line != 6 {
		t.Errorf("RUN on line %d, want 6", runs[0].Line)
	}
	final := f.Final()
	if final.Image != "scratch" || final.Name != "" {
		t.Errorf("final stage %q %q", final.Image, final.Name)
	}
	cp := final.All("COPY")[0]
	if cp.Flags["from"] != "build" || !reflect.DeepEqual(cp.Args, []string{"/out/x", "/x"}) {
		t.Errorf("COPY %+v", cp)
	}
	if env := final.Env(); !reflect.DeepEqual(env, map[string]string{"A": "1", "B": "two", "LEGACY": "value with spaces"}) {
		t.Errorf("ENV %v", env)
	}
	ep := final.All("ENTRYPOINT")[0]
	if !ep.JSON || !reflect.DeepEqual(ep.Args, []string{"/x", "--flag"}) {
		t.Errorf("ENTRYPOINT %+v", ep)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      error  // errors.Is target, or nil
		substr    string // in the message
	}{
		{"empty", "", dockerfile.ErrNoFrom, ""},
		{"only comments", "# hello\n\n", dockerfile.ErrNoFrom, ""},
		{"instruction before FROM", "RUN true\nFROM scratch\n", dockerfile.ErrNoFrom, "line 1"},
		{"bad exec form", "FROM scratch\nENTRYPOINT [\"/x\", \n", nil, "exec form"},
		{"FROM with junk", "FROM a b\n", nil, "FROM wants"},
		{"too big", "FROM scratch\n" + strings.Repeat("# x\n", dockerfile.MaxSize/4+1), nil, "over"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dockerfile.Parse(strings.NewReader(tt.src))
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v is not %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("error %q does not mention %q", err, tt.substr)
			}
		})
	}
}

func TestIgnore(t *testing.T) {
	ig, err := dockerfile.ParseIgnore(strings.NewReader(`
# comment
.git
/bin
**/*.test
tools/jaeger
docs/*
!docs/keep.md
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want bool
	}{
		{".git/config", true},
		{"bin", true},
		{"bin/amtprov", true},
		{"libs/bin.go", false},
		{"libs/amt/amt.test", true},
		{"x.test", true},
		{"tools/jaeger/go.mod", true},
		{"tools/amtsim/go.mod", false},
		{"docs/a.md", true},
		{"docs/keep.md", false},
		{"go.work", false},
	}
	for _, tt := range tests {
		if got := ig.Excludes(tt.path); got != tt.want {
			t.Errorf("Excludes(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}
