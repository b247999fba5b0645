package firmware

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const adminPass = "Adm1n-Pa55!"

func provisionedDevice(t *testing.T) *Device {
	t.Helper()
	return newTestDevice(t, func(c *Config) { c.Provisioned, c.AdminUser, c.AdminPassword = true, "admin", adminPass })
}

// challengeOf fetches a fresh challenge and returns its parameters.
func challengeOf(t *testing.T, url string, client ...*http.Client) map[string]string {
	t.Helper()
	c := http.DefaultClient
	if len(client) > 0 {
		c = client[0]
	}
	status, _, h := postXML(t, c, url, getXML("AMT_GeneralSettings"))
	if status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", status)
	}
	ch, err := parseDigest(h.Get("WWW-Authenticate"))
	if err != nil {
		t.Fatalf("challenge %q: %v", h.Get("WWW-Authenticate"), err)
	}
	return map[string]string{"realm": ch.realm, "nonce": ch.nonce, "qop": ch.qop, "stale": staleOf(h.Get("WWW-Authenticate"))}
}

func staleOf(h string) string {
	_, rest, _ := strings.Cut(h, `stale="`)
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

func md5hex(s string) string {
	b := md5.Sum([]byte(s))
	return hex.EncodeToString(b[:])
}

// digestAuth computes an Authorization header. style "gwm" formats like
// go-wsman (bare qop and nc=%08x, 6-hex cnonce), "mc" like MeshCentral
// (everything quoted, nc as a decimal counter, 32-hex cnonce).
func digestAuth(style, user, pass, realm, nonce, uri string, nc int, respOverride *string) string {
	var ncs, cnonce string
	switch style {
	case "gwm":
		ncs, cnonce = fmt.Sprintf("%08x", nc), "a1b2c3"
	case "mc":
		ncs, cnonce = fmt.Sprint(nc), "0123456789abcdef0123456789abcdef"
	}
	resp := md5hex(md5hex(user+":"+realm+":"+pass) + ":" + nonce + ":" + ncs + ":" + cnonce + ":auth:" + md5hex("POST:"+uri))
	if respOverride != nil {
		resp = *respOverride
	}
	if style == "mc" {
		return fmt.Sprintf(`Digest username="%s",realm="%s",nonce="%s",uri="%s",qop="auth",nc="%s",cnonce="%s",response="%s"`, user, realm, nonce, uri, ncs, cnonce, resp)
	}
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", qop=auth, nc=%s, cnonce="%s"`, user, realm, nonce, uri, resp, ncs, cnonce)
}

func TestDigestChallenge(t *testing.T) {
	d := provisionedDevice(t)
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(srv.Close)
	status, body, h := postXML(t, http.DefaultClient, srv.URL+"/wsman", getXML("AMT_GeneralSettings"))
	if status != http.StatusUnauthorized {
		t.Fatalf("status %d", status)
	}
	// §8.3 capture: realm, nonce, stale, qop in AMT's spelling.
	wa := h.Get("WWW-Authenticate")
	if !strings.HasPrefix(wa, `Digest realm="`+testRealm+`", nonce="`) || !strings.HasSuffix(wa, `",stale="false",qop="auth"`) {
		t.Errorf("WWW-Authenticate = %q", wa)
	}
	if h.Get("Server") != "Intel(R) Active Management Technology 16.1.25.2124" || h.Get("Content-Type") != "text/html" {
		t.Errorf("headers %v", h)
	}
	if !bytesContains(body, "Intel&reg; Active Management Technology") {
		t.Errorf("401 body is not AMT's page:\n%s", body)
	}
	if a, b := challengeOf(t, srv.URL+"/wsman")["nonce"], challengeOf(t, srv.URL+"/wsman")["nonce"]; a == b || len(a) != 32 {
		t.Errorf("nonces %q and %q: want fresh 32-character nonces", a, b)
	}
}

func TestDigestAuth(t *testing.T) {
	empty := ""
	tests := []struct {
		name      string
		header    func(nonce string) string
		status    int
		wantStale string
	}{
		{"go-wsman form", func(n string) string { return digestAuth("gwm", "admin", adminPass, testRealm, n, "/wsman", 1, nil) }, 200, ""},
		{"MeshCentral form", func(n string) string { return digestAuth("mc", "admin", adminPass, testRealm, n, "/wsman", 1, nil) }, 200, ""},
		{"absolute uri (go-wsman first try)", func(n string) string {
			return digestAuth("gwm", "admin", adminPass, testRealm, n, "http://127.10.0.1:16992/wsman", 1, nil)
		}, 200, ""},
		{"wrong password", func(n string) string {
			return digestAuth("gwm", "admin", "Wr0ng-Pa55!", testRealm, n, "/wsman", 1, nil)
		}, 401, "false"},
		{"wrong user", func(n string) string { return digestAuth("gwm", "root", adminPass, testRealm, n, "/wsman", 1, nil) }, 401, "false"},
		{"wrong realm", func(n string) string {
			return digestAuth("gwm", "admin", adminPass, "Digest:00000000000000000000000000000000", n, "/wsman", 1, nil)
		}, 401, "false"},
		{"empty response (INTEL-SA-00075 probe)", func(n string) string { return digestAuth("gwm", "admin", adminPass, testRealm, n, "/wsman", 1, &empty) }, 401, "false"},
		{"response omitted", func(n string) string {
			return fmt.Sprintf(`Digest username="admin", realm="%s", nonce="%s", uri="/wsman", qop=auth, nc=00000001, cnonce="abc"`, testRealm, n)
		}, 401, "false"},
		{"no qop (RFC 2069)", func(n string) string {
			return fmt.Sprintf(`Digest username="admin", realm="%s", nonce="%s", uri="/wsman", response="%s"`, testRealm, n,
				md5hex(md5hex("admin:"+testRealm+":"+adminPass)+":"+n+":"+md5hex("POST:/wsman")))
		}, 401, "false"},
		{"uri of another resource", func(n string) string {
			return digestAuth("gwm", "admin", adminPass, testRealm, n, "/index.htm", 1, nil)
		}, 401, "false"},
		{"unknown nonce, right password", func(string) string {
			return digestAuth("gwm", "admin", adminPass, testRealm, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "/wsman", 1, nil)
		}, 401, "true"},
		{"basic auth", func(string) string { return "Basic YWRtaW46QWRtMW4tUGE1NSE=" }, 401, "false"},
		{"garbage", func(string) string { return `Digest username="admin, realm=` }, 401, "false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := provisionedDevice(t)
			srv := httptest.NewServer(d.Handler())
			t.Cleanup(srv.Close)
			nonce := challengeOf(t, srv.URL+"/wsman")["nonce"]
			status, body, h := postXML(t, http.DefaultClient, srv.URL+"/wsman", getXML("AMT_GeneralSettings"), "Authorization", tc.header(nonce))
			if status != tc.status {
				t.Fatalf("status %d, want %d:\n%s", status, tc.status, body)
			}
			if tc.status == 401 {
				if got := staleOf(h.Get("WWW-Authenticate")); got != tc.wantStale {
					t.Errorf("stale=%q, want %q", got, tc.wantStale)
				}
				return
			}
			if r := parseResponse(t, body); r.body.name.Local != "AMT_GeneralSettings" {
				t.Errorf("answer %s", r.body.name.Local)
			}
		})
	}
}

func TestDigestNonceCountAndReplay(t *testing.T) {
	d := provisionedDevice(t)
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(srv.Close)
	url := srv.URL + "/wsman"
	nonce := challengeOf(t, url)["nonce"]
	send := func(nc int) int {
		status, _, _ := postXML(t, http.DefaultClient, url, getXML("AMT_GeneralSettings"), "Authorization", digestAuth("gwm", "admin", adminPass, testRealm, nonce, "/wsman", nc, nil))
		return status
	}
	for _, step := range []struct {
		nc   int
		want int
	}{{1, 200}, {2, 200}, {2, 401}, {1, 401}, {5, 200}} {
		if got := send(step.nc); got != step.want {
			t.Fatalf("nc=%d: status %d, want %d", step.nc, got, step.want)
		}
	}
}

func TestDigestNonceExpiryAndBound(t *testing.T) {
	d := provisionedDevice(t)
	now := time.Now()
	d.mu.Lock()
	first := d.newNonceLocked(now)
	d.mu.Unlock()
	req := httptest.NewRequest(http.MethodPost, "/wsman", nil)
	req.Header.Set("Authorization", digestAuth("gwm", "admin", adminPass, testRealm, first, "/wsman", 1, nil))
	d.mu.Lock()
	got := d.checkDigestLocked(req, now.Add(nonceLifetime+time.Second))
	d.mu.Unlock()
	if got != authStale {
		t.Fatalf("expired nonce: %v, want stale", got)
	}
	d.mu.Lock()
	for range 10 * maxNonces {
		d.newNonceLocked(now)
	}
	n := len(d.nonces)
	got = d.checkDigestLocked(req, now)
	d.mu.Unlock()
	if n != maxNonces {
		t.Fatalf("%d nonces kept, want the bound %d", n, maxNonces)
	}
	if got != authStale {
		t.Fatalf("evicted nonce: %v, want stale", got)
	}
}

func TestDigestWrongPasswordFault(t *testing.T) {
	d := provisionedDevice(t)
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(srv.Close)
	d.InjectFault(FaultWrongPassword, time.Now().Add(time.Hour))
	nonce := challengeOf(t, srv.URL+"/wsman")["nonce"]
	status, _, _ := postXML(t, http.DefaultClient, srv.URL+"/wsman", getXML("AMT_GeneralSettings"), "Authorization", digestAuth("gwm", "admin", adminPass, testRealm, nonce, "/wsman", 1, nil))
	if status != http.StatusUnauthorized {
		t.Fatalf("status %d with wrong_password fault, want 401", status)
	}
}

func TestParseDigestPassword(t *testing.T) {
	want := md5.Sum([]byte("admin:" + testRealm + ":" + adminPass))
	for _, in := range []string{digestPassword("admin", testRealm, adminPass), hex.EncodeToString(want[:]), strings.ToUpper(hex.EncodeToString(want[:]))} {
		got, ok := parseDigestPassword(in)
		if !ok || string(got) != string(want[:]) {
			t.Errorf("parseDigestPassword(%q) = %x, %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "abc", "AAAA", hex.EncodeToString(want[:15]), "zz" + hex.EncodeToString(want[:15])} {
		if _, ok := parseDigestPassword(bad); ok {
			t.Errorf("parseDigestPassword(%q) accepted", bad)
		}
	}
}
