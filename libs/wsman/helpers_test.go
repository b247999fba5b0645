package wsman_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/wsman"
)

// fixtureDir finds shared/fixtures/wsman-responses beside an ancestor of
// the package directory (the workspace here; CI clones with shared/ beside
// the clone).
func fixtureDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatalf("working directory: %v", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		for _, cand := range []string{filepath.Join(d, "shared", "fixtures", "wsman-responses")} {
			if st, err := os.Stat(cand); err == nil && st.IsDir() {
				return cand
			}
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	tb.Fatalf("shared/fixtures/wsman-responses not found beside any ancestor of %s: check out the shared/ directory next to the repository", dir)
	return ""
}

func readFixture(tb testing.TB, rel string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir(tb), filepath.FromSlash(rel)))
	if err != nil {
		tb.Fatalf("fixture %s: %v", rel, err)
	}
	return b
}

// seenRequest is one request a test server received.
type seenRequest struct {
	Action    string
	Resource  string
	MessageID string
	Body      string
	Auth      string
}

var (
	reAction   = regexp.MustCompile(`<a:Action>([^<]*)</a:Action>`)
	reResource = regexp.MustCompile(`<w:ResourceURI>([^<]*)</w:ResourceURI>`)
	reMsgID    = regexp.MustCompile(`<a:MessageID>([^<]*)</a:MessageID>`)
)

func parseSeen(r *http.Request, body []byte) seenRequest {
	s := seenRequest{Body: string(body), Auth: r.Header.Get("Authorization")}
	if m := reAction.FindSubmatch(body); m != nil {
		s.Action = string(m[1])
	}
	if m := reResource.FindSubmatch(body); m != nil {
		s.Resource = string(m[1])
	}
	if m := reMsgID.FindSubmatch(body); m != nil {
		s.MessageID = string(m[1])
	}
	return s
}

// replay is a device that answers from recorded fixtures: routes map
// "<Operation> <Class>" (Operation = last segment of the Action) to a
// fixture path.
type replay struct {
	tb     testing.TB
	routes map[string]string
	mu     sync.Mutex
	seen   []seenRequest
}

func (r *replay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	s := parseSeen(req, body)
	r.mu.Lock()
	r.seen = append(r.seen, s)
	r.mu.Unlock()
	key := lastSegment(s.Action) + " " + lastSegment(s.Resource)
	path, ok := r.routes[key]
	if !ok {
		http.Error(w, "no fixture for "+key, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/soap+xml; charset=UTF-8")
	_, _ = w.Write(readFixture(r.tb, path))
}

func (r *replay) requests() []seenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seenRequest(nil), r.seen...)
}

func lastSegment(s string) string {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// startServer runs h on a loopback HTTP server for the test.
func startServer(tb testing.TB, h http.Handler) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv
}

// newClient makes a client for srv, closed at cleanup.
func newClient(tb testing.TB, addr string, mod func(*wsman.Config)) *wsman.Client {
	tb.Helper()
	cfg := wsman.Config{Address: addr, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := wsman.New(cfg)
	if err != nil {
		tb.Fatalf("wsman.New: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

func hostPort(srv *httptest.Server) string {
	return strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://")
}

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// soapResponse wraps a body element in an AMT-shaped response envelope.
func soapResponse(body string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><a:Envelope xmlns:a="http://www.w3.org/2003/05/soap-envelope" xmlns:b="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:c="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:g="http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings"><a:Header><b:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</b:To><b:RelatesTo>1</b:RelatesTo><b:Action a:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse</b:Action><b:MessageID>uuid:00000000-8086-8086-8086-000000000001</b:MessageID><c:ResourceURI>http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings</c:ResourceURI></a:Header><a:Body>`)
	b.WriteString(body)
	b.WriteString(`</a:Body></a:Envelope>`)
	return b.Bytes()
}

// fixedBody answers every request with b (HTTP 200).
func fixedBody(b []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/soap+xml; charset=UTF-8")
		_, _ = w.Write(b)
	})
}

// digestDevice puts RFC 2617 digest (qop=auth) in front of next, as AMT
// does after provisioning (PROTOCOL.md §8.3). A nonce serves maxUses
// requests, then is reported stale.
type digestDevice struct {
	realm, user, pass string
	maxUses           int
	next              http.Handler

	mu         sync.Mutex
	nonces     map[string]int // nonce → uses
	seq        int
	challenges int
	lastNC     map[string]string
}

var reDigestParam = regexp.MustCompile(`(\w+)=(?:"([^"]*)"|([^,\s]*))`)

func (d *digestDevice) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ok, stale := d.check(r)
	if !ok {
		_, _ = io.Copy(io.Discard, r.Body)
		d.mu.Lock()
		d.challenges++
		d.seq++
		nonce := "nonce-" + strings.Repeat("x", d.seq%3) + string(rune('a'+d.seq%26))
		if d.nonces == nil {
			d.nonces, d.lastNC = map[string]int{}, map[string]string{}
		}
		d.nonces[nonce] = 0
		d.mu.Unlock()
		staleStr := "false"
		if stale {
			staleStr = "true"
		}
		w.Header().Set("WWW-Authenticate", `Digest realm="`+d.realm+`", nonce="`+nonce+`",stale="`+staleStr+`",qop="auth"`)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, "<html>Log on failed. Incorrect user name or password, or user account temporarily locked.</html>")
		return
	}
	d.next.ServeHTTP(w, r)
}

func (d *digestDevice) check(r *http.Request) (ok, stale bool) {
	h := r.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Digest ") {
		return false, false
	}
	p := map[string]string{}
	for _, m := range reDigestParam.FindAllStringSubmatch(h[len("Digest "):], -1) {
		p[m[1]] = m[2] + m[3]
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	uses, known := d.nonces[p["nonce"]]
	if !known {
		return false, p["nonce"] != ""
	}
	if uses >= d.maxUses {
		delete(d.nonces, p["nonce"])
		return false, true
	}
	if p["username"] != d.user || p["realm"] != d.realm || p["uri"] != r.URL.RequestURI() || p["qop"] != "auth" || p["response"] == "" {
		return false, false
	}
	if p["nc"] <= d.lastNC[p["nonce"]] {
		return false, false // replayed nonce count
	}
	ha1 := md5hex(d.user + ":" + d.realm + ":" + d.pass)
	ha2 := md5hex(r.Method + ":" + p["uri"])
	if md5hex(ha1+":"+p["nonce"]+":"+p["nc"]+":"+p["cnonce"]+":auth:"+ha2) != p["response"] {
		return false, false
	}
	d.lastNC[p["nonce"]] = p["nc"]
	d.nonces[p["nonce"]] = uses + 1
	return true, false
}

func (d *digestDevice) challengeCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.challenges
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
