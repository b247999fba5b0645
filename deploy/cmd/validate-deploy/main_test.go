package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRun runs the report on the repository, then on a copy whose compose
// file lost a NATS node: the first passes every check, the second fails.
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

	// A copy of the work tree's files (tracked and untracked, not ignored:
	// about 2 MB), with one NATS node renamed.
	broken := t.TempDir()
	files, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Skipf("git ls-files: %v (not a git checkout)", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue // deleted in the work tree
		}
		if f == "docker-compose.yml" {
			b = bytes.Replace(b, []byte("  nats-3:\n"), []byte("  nats-x:\n"), 1)
		}
		if err := os.MkdirAll(filepath.Join(broken, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(broken, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	failed, err = run(context.Background(), []string{"-root", broken}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if failed == 0 || !strings.Contains(out.String(), "FAIL  docker-compose.yml: topology") || !strings.Contains(out.String(), "no service nats-3") {
		t.Fatalf("broken copy: %d failed:\n%s", failed, out.String())
	}
}
