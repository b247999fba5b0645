package wsman

import (
	"strings"
	"testing"
)

// TestDigestRFC2617Vector checks the response computation against the
// worked example of RFC 2617 §3.5.
func TestDigestRFC2617Vector(t *testing.T) {
	ch := challenge{realm: "testrealm@host.com", nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093", qop: "auth", opaque: "5ccc069c403ebaf9f0171e9517f40e41"}
	h := digestHeader(ch, "Mufasa", "Circle Of Life", "GET", "/dir/index.html", 1, "0a4f113b")
	for _, want := range []string{`response="6629fae49393a05397450978507c4ef1"`, `nc=00000001`, `qop=auth`, `cnonce="0a4f113b"`, `opaque="5ccc069c403ebaf9f0171e9517f40e41"`, `username="Mufasa"`} {
		if !strings.Contains(h, want) {
			t.Errorf("header lacks %s: %s", want, h)
		}
	}
	if strings.Contains(h, "Circle Of Life") {
		t.Fatal("the password is in the Authorization header")
	}
}

func TestParseChallenge(t *testing.T) {
	tests := []struct {
		in      string
		want    challenge
		wantErr bool
	}{
		// The real AMT 15 challenge of PROTOCOL.md §8.3.
		{in: `Digest realm="Digest:727734D63A1FC0423736E48DA554E462", nonce="B9AX94iAAAAAAAAAx6rrSfPHGUrx/3uA",stale="false",qop="auth"`,
			want: challenge{realm: "Digest:727734D63A1FC0423736E48DA554E462", nonce: "B9AX94iAAAAAAAAAx6rrSfPHGUrx/3uA", qop: "auth"}},
		{in: `digest realm="r", nonce="n", stale=TRUE, qop="auth,auth-int", algorithm=MD5`,
			want: challenge{realm: "r", nonce: "n", qop: "auth,auth-int", algorithm: "MD5", stale: true}},
		{in: `Basic realm="r"`, wantErr: true},
		{in: `Digest realm="r"`, wantErr: true},
		{in: `Digest realm="r", nonce="n", algorithm=SHA-256`, wantErr: true},
		{in: `Digest realm="r", nonce="n", qop="auth-int"`, wantErr: true},
		{in: `Digest realm="unterminated, nonce="n`, wantErr: true},
		{in: `Digest realm`, wantErr: true},
		{in: `Digest nonce="` + strings.Repeat("n", 3000) + `"`, wantErr: true},
	}
	for _, tc := range tests {
		got, err := parseChallenge(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseChallenge(%.60q) err = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && got != tc.want {
			t.Errorf("parseChallenge(%.60q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestQuoteEscapesBackslashAndDoubleQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"admin":                    "admin",
		`Digest:727734D63A1FC042`:  `Digest:727734D63A1FC042`,
		`a"b`:                      `a\"b`,
		`a\b`:                      `a\\b`,
		`\"`:                       `\\\"`,
		"ünïcode \"quoted\" \\end": "ünïcode \\\"quoted\\\" \\\\end",
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %q, want %q", in, got, want)
		}
	}
}
