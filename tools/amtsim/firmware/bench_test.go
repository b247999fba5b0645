package firmware

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkWSManGet is the in-process cost of one setup-session WS-Man
// call through Handler (parse, dispatch, render), without network or TLS.
func BenchmarkWSManGet(b *testing.B) {
	keys, err := testKeys()
	if err != nil {
		b.Fatal(err)
	}
	d, err := NewDevice(testConfig(), Realism{}, &rotatingKeys{keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	h := d.Handler()
	msg := getXML("AMT_GeneralSettings")
	peer := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/wsman", strings.NewReader(msg))
		r.TLS = peer
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkDigestGet adds digest verification (one nonce, rising nc).
func BenchmarkDigestGet(b *testing.B) {
	keys, err := testKeys()
	if err != nil {
		b.Fatal(err)
	}
	cfg := testConfig()
	cfg.Provisioned, cfg.AdminUser, cfg.AdminPassword = true, "admin", adminPass
	d, err := NewDevice(cfg, Realism{}, &rotatingKeys{keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	h := d.Handler()
	msg := getXML("AMT_GeneralSettings")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/wsman", strings.NewReader(msg)))
	ch, err := parseDigest(w.Header().Get("WWW-Authenticate"))
	if err != nil {
		b.Fatal(err)
	}
	nc := 0
	b.ReportAllocs()
	for b.Loop() {
		nc++
		r := httptest.NewRequest(http.MethodPost, "/wsman", strings.NewReader(msg))
		r.Header.Set("Authorization", digestAuth("gwm", "admin", adminPass, testRealm, ch.nonce, "/wsman", nc, nil))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}
