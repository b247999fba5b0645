package firmware

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ensureTool finds bin, installing Debian package pkg with apt when it is
// absent. It skips, saying why, only when apt cannot provide it.
func ensureTool(t *testing.T, bin, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(bin); err == nil {
		return
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s (Debian package %s) is not installed and apt needs root here", bin, pkg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := func() error {
		return exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", pkg).Run()
	}
	if err := install(); err != nil {
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
			t.Skipf("%s (Debian package %s) is not installed and apt is unreachable: %v\n%s", bin, pkg, uerr, out)
		}
		if err := install(); err != nil {
			t.Skipf("%s (Debian package %s) is not installed and apt could not install it: %v", bin, pkg, err)
		}
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("apt installed %s but %s is not on PATH", pkg, bin)
	}
}

// TestWSLGetGeneralSettings reads AMT_GeneralSettings with Debian's wsl
// WS-Management client (Dell's bash/curl scripts): an independent client
// that writes its own envelopes (s:/wsa:/wsman: prefixes, mustUnderstand
// headers, uuid MessageIDs). wsl passes credentials with curl --user, so a
// ~/.curlrc with --digest makes curl answer AMT's digest challenge.
func TestWSLGetGeneralSettings(t *testing.T) {
	ensureTool(t, "wsl", "wsl")
	ensureTool(t, "uuidgen", "uuid-runtime") // wsl's MessageID source
	ensureTool(t, "curl", "curl")
	ensureTool(t, "xmllint", "libxml2-utils")

	d := provisionedDevice(t)
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(srv.Close)
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".curlrc"), []byte("--digest\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "wsl", "get", classURI("AMT_GeneralSettings"))
	cmd.Dir = home
	cmd.Env = append(os.Environ(),
		"HOME="+home,
		"WSENDPOINT="+strings.TrimPrefix(srv.URL, "http://"),
		"WSUSER=admin",
		"WSPASS="+adminPass,
		"WSNOSSL=true",
		"OUTPREFIX="+home,
		"IPINTERACTIVE=0",
		"KEEPHISTORY=0",
	)
	out, err := cmd.CombinedOutput()
	resp, rerr := os.ReadFile(filepath.Join(home, "response.xml"))
	if rerr != nil {
		t.Fatalf("wsl wrote no response (%v, %v):\n%s", err, rerr, out)
	}
	r := parseResponse(t, resp)
	if r.body == nil || r.body.name.Local != "AMT_GeneralSettings" {
		t.Fatalf("wsl got no AMT_GeneralSettings (%v):\n%s\n%s", err, resp, out)
	}
	if got := r.body.mustValue(t, "DigestRealm"); got != testRealm {
		t.Fatalf("DigestRealm = %q", got)
	}
}
