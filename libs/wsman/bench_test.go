package wsman_test

import (
	"testing"

	"github.com/amtprov/amtprov/libs/wsman"
)

// BenchmarkEnvelope: building a method call with parameters.
func BenchmarkEnvelope(b *testing.B) {
	req := wsman.MethodRequest("AMT_AuthorizationService", "SetAdminAclEntryEx", []wsman.Property{
		wsman.Prop("Username", "admin"), wsman.Prop("DigestPassword", "q4tLeuEmWvRUg/2s7zJbHA=="),
	})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := req.Envelope(uint64(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseResponse: the largest common response, an 11-item Pull.
func BenchmarkParseResponse(b *testing.B) {
	data := readFixture(b, "cim/software/identity/pull.xml")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wsman.ParseResponse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetWithDigest: one typed call over loopback HTTP with digest
// (nonce reused on the kept-alive connection), the per-call client cost a
// provisioner pays.
func BenchmarkGetWithDigest(b *testing.B) {
	rp := &replay{tb: b, routes: fixtureRoutes}
	dd := &digestDevice{realm: testRealm, user: "admin", pass: testPassword, maxUses: 1 << 30, next: rp}
	srv := startServer(b, dd)
	c := newClient(b, hostPort(srv), func(cfg *wsman.Config) { cfg.Username, cfg.Password = "admin", testPassword })
	ctx := testContext(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.GeneralSettings(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
