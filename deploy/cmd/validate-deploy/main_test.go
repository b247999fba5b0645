package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestRun runs the report on the repository: every check passes.
func TestRun(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	failed, err := run(context.Background(), []string{"-root", root}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if failed != 0 || !strings.Contains(out.String(), " passed, 0 failed\n") {
		t.Fatalf("repository: %d failed:\n%s", failed, out.String())
	}
	if _, err := run(context.Background(), []string{"-root", t.TempDir()}, &out); err == nil {
		t.Fatal("a directory without the deployment files is not an error")
	}
}

// TestReport shows how a failing check is reported and counted (the checks
// themselves fail on broken files in the deploy package's tests).
func TestReport(t *testing.T) {
	var out bytes.Buffer
	failed := report(&out, []check{
		{"good", func() []error { return nil }},
		{"bad", func() []error { return []error{errors.New("first"), errors.New("second")} }},
	})
	want := "ok    good\nFAIL  bad\n      first\n      second\n1 passed, 1 failed\n"
	if failed != 1 || out.String() != want {
		t.Fatalf("report = %d, %q; want 1, %q", failed, out.String(), want)
	}
}
