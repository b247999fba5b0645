package amtsim_test

import (
	"bytes"
	"crypto/md5"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim"
	"github.com/amtprov/amtprov/tools/amtsim/internal/testpki"
)

const (
	amtURI    = "http://intel.com/wbem/wscim/1/amt-schema/1/"
	soapStart = `<?xml version="1.0" encoding="utf-8"?><Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns="http://www.w3.org/2003/05/soap-envelope">`
)

// invoke builds a method call as go-wsman-messages and MeshCentral send it
// (PROTOCOL.md §8.1).
func invoke(id int, class, method, params string) string {
	uri := amtURI + class
	return soapStart + `<Header><a:Action>` + uri + `/` + method + `</a:Action><a:To>/wsman</a:To><w:ResourceURI>` + uri +
		`</w:ResourceURI><a:MessageID>` + fmt.Sprint(id) + `</a:MessageID><a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo><w:OperationTimeout>PT60S</w:OperationTimeout></Header>` +
		`<Body><h:` + method + `_INPUT xmlns:h="` + uri + `">` + params + `</h:` + method + `_INPUT></Body></Envelope>`
}

var returnValue = regexp.MustCompile(`ReturnValue>(\d+)<`)

// TestTLSPKIProvisioningThroughTheListener configures a setup-mode device
// the bare-metal way (PROTOCOL.md §6.3): the provisioning chain as TLS
// client certificate on 16993, MEBx and admin passwords, CommitChanges. The
// device must then be post-provisioned, stop sending hellos while its
// neighbour keeps going, and require digest on 16992.
func TestTLSPKIProvisioningThroughTheListener(t *testing.T) {
	sink := newHelloSink(t)
	ca := testpki.NewRoot(t, "amtprov dev provisioning root")
	o := baseOptions(t, 2, 8, sink)
	o.ProvisionedShare, o.LegacyShare = 0, 0
	o.TrustHashes = []amt.RootHash{ca.Hash(amt.HashSHA1)}
	// A hello every 10 ms for the whole test.
	o.HelloSchedule = amtsim.HelloSchedule{Phases: []amtsim.HelloPhase{{Every: time.Minute, Count: 1000}}, Cutoff: 24 * time.Hour}
	f := start(t, o)
	dev, other := f.Devices()[0], f.Devices()[1]
	cfg := dev.Config()
	eventually(t, "first hellos", func() bool { return sink.devicesHeard() == 2 })

	chain := ca.Issue(t, testpki.Good("prov.example.com"))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{chain}},
	}}
	t.Cleanup(client.CloseIdleConnections)
	base := "https://" + net.JoinHostPort(cfg.IP, "21993") + "/wsman"
	call := func(id int, class, method, params string) string {
		t.Helper()
		resp, err := client.Post(base, "application/soap+xml; charset=utf-8", strings.NewReader(invoke(id, class, method, params)))
		if err != nil {
			t.Fatalf("%s over setup-mode TLS: %v (rejections %q)", method, err, dev.TLSRejections())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d: %s", method, resp.StatusCode, b)
		}
		m := returnValue.FindSubmatch(b)
		if m == nil || string(m[1]) != "0" {
			t.Fatalf("%s: ReturnValue %q in %s", method, m, b)
		}
		return string(b)
	}
	const adminPass = "N3w-Adm1n!"
	ha1 := md5.Sum([]byte("admin:" + cfg.Realm + ":" + adminPass))
	call(1, "AMT_SetupAndConfigurationService", "SetMEBxPassword", "<h:Password>N3w-MEBx!</h:Password>")
	call(2, "AMT_AuthorizationService", "SetAdminAclEntryEx", "<h:Username>admin</h:Username><h:DigestPassword>"+base64.StdEncoding.EncodeToString(ha1[:])+"</h:DigestPassword>")
	call(3, "AMT_SetupAndConfigurationService", "CommitChanges", "")
	if dev.State() != amt.PostProvisioning || dev.ControlMode() != amt.ControlACM {
		t.Fatalf("after commit: state %v mode %v", dev.State(), dev.ControlMode())
	}

	// Hellos stop: while the neighbour sends five more, this device sends
	// none (one may have been on its way at the commit). The device's own
	// counter is the ground truth; the sink lags behind it.
	mine, theirs := dev.Counters.HellosSent.Load(), other.Counters.HellosSent.Load()
	eventually(t, "five more hellos from the neighbour", func() bool { return other.Counters.HellosSent.Load() >= theirs+5 })
	after := dev.Counters.HellosSent.Load()
	if after > mine+1 {
		t.Fatalf("provisioned device kept sending hellos: %d then %d", mine, after)
	}

	// TLS was not configured: 16993 is closed now to new connections (the
	// client must reconnect after a commit, §7.3a), 16992 wants digest.
	client.CloseIdleConnections()
	if _, err := client.Post(base, "application/soap+xml", strings.NewReader(invoke(4, "AMT_GeneralSettings", "Get", ""))); err == nil {
		t.Fatal("16993 still answers after a commit without TLS")
	}
	resp, err := http.Post("http://"+net.JoinHostPort(cfg.IP, "21992")+"/wsman", "application/soap+xml", strings.NewReader(invoke(5, "AMT_GeneralSettings", "Get", "")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), cfg.Realm) {
		t.Fatalf("16992 without credentials: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// A reset opens a new window: hellos resume.
	dev.Reset()
	eventually(t, "hellos after reset", func() bool { return dev.Counters.HellosSent.Load() > after })
}

// TestWSLGetsGeneralSettings reads AMT_GeneralSettings from a device
// provisioned by another console with Debian's wsl WS-Management client
// (curl with digest), over 16992 and over TLS on 16993.
func TestWSLGetsGeneralSettings(t *testing.T) {
	wslget := ensureWSL(t)
	o := baseOptions(t, 1, 9, nil)
	o.ProvisionServer = "127.0.0.1:1"
	o.ProvisionedShare, o.LegacyShare, o.AdminPassword = 1, 0, "P@ssw0rd!"
	f := start(t, o)
	d := f.Devices()[0]
	cfg := d.Config()
	for _, tc := range []struct {
		name, port string
		tls        bool
	}{{"16992 plain", "21992", false}, {"16993 TLS", "21993", true}} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			conf := "OUTPREFIX=" + home + "\nKEEPHISTORY=0\nOUTLEVEL=1\nWGETTIMEOUTSECS=10\n"
			if !tc.tls {
				conf += "WSNOSSL=true\n"
			}
			// wsl passes --user to curl; AMT wants digest, which curl takes
			// from the curlrc.
			if err := os.WriteFile(filepath.Join(home, ".wsl-config"), []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(home, ".curlrc"), []byte("--digest\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			// wslget judges success by finding the selector's name in the
			// answer, so name the instance as MeshCentral does.
			cmd := exec.Command(wslget, amtURI+"AMT_GeneralSettings", "InstanceID=Intel(r) AMT: General Settings")
			cmd.Dir = home
			cmd.Env = append(os.Environ(), "HOME="+home, "WSENDPOINT="+net.JoinHostPort(cfg.IP, tc.port),
				"WSUSER=admin", "WSPASS="+o.AdminPassword, "WSAUTOMATED=1")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			log, _ := os.ReadFile(filepath.Join(home, "log.txt"))
			if err != nil {
				t.Fatalf("wslget: %v\n%s\nlog:\n%s", err, out.String(), log)
			}
			for _, want := range []string{"AMT_GeneralSettings", "<g:DigestRealm>" + cfg.Realm + "</g:DigestRealm>"} {
				if !strings.Contains(out.String(), want) {
					t.Fatalf("wsl output lacks %q:\n%s\nlog:\n%s", want, out.String(), log)
				}
			}
		})
	}
	if d.Counters.WSManCalls.Load() < 2 {
		t.Fatalf("WSManCalls = %d", d.Counters.WSManCalls.Load())
	}
}

// ensureWSL returns the path of wslget, installing Debian's wsl package
// when it is missing; it skips only when apt cannot provide it.
func ensureWSL(t *testing.T) string {
	t.Helper()
	_, uuidErr := exec.LookPath("uuidgen") // wsl makes MessageIDs with it
	if p, err := exec.LookPath("wslget"); err == nil && uuidErr == nil {
		return p
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil {
		t.Skip("wsl is not installed and apt-get is not available: install Debian's wsl package to run this test")
	}
	cmd := exec.Command(apt, "install", "-y", "--no-install-recommends", "wsl", "curl", "libxml2-utils", "uuid-runtime")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("wsl is not installed and apt-get could not install it (apt unreachable?): %v\n%s", err, out)
	}
	p, err := exec.LookPath("wslget")
	if err != nil {
		t.Fatalf("apt-get installed wsl but wslget is not on PATH: %v", err)
	}
	return p
}
