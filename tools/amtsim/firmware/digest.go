package firmware

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HTTP digest authentication as AMT does it (PROTOCOL.md §8.3): RFC 2617
// with qop=auth only (AMT_AuthorizationService.AllowHttpQopAuthOnly = 1),
// realm fixed per device, a fresh nonce per challenge.
const (
	maxNonces       = 32              // per device; the oldest is forgotten first
	nonceLifetime   = 5 * time.Minute // older nonces are answered stale="true"
	maxAuthHeader   = 2048
	maxCNonceLength = 64
)

// nonceEntry is a nonce handed out in a challenge.
type nonceEntry struct {
	value  string
	issued time.Time
	lastNC uint64 // highest nonce count seen; a request must exceed it
}

// errDigestSyntax marks an Authorization header that is not a digest
// credential at all.
var errDigestSyntax = errors.New("malformed digest credentials")

// digestCreds are the fields of an Authorization: Digest header.
type digestCreds struct {
	username, realm, nonce, uri, response string
	qop, nc, cnonce, algorithm            string
}

// parseDigest reads `Digest k=v, k="v", ...`. Values may be quoted or bare
// (MeshCentral quotes qop and nc; go-wsman does not, §8.3).
func parseDigest(h string) (digestCreds, error) {
	var c digestCreds
	if len(h) > maxAuthHeader {
		return c, fmt.Errorf("%w: header longer than %d bytes", errDigestSyntax, maxAuthHeader)
	}
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Digest") {
		return c, fmt.Errorf("%w: scheme is not Digest", errDigestSyntax)
	}
	seen := map[string]bool{}
	for {
		rest = strings.TrimLeft(rest, " \t,")
		if rest == "" {
			break
		}
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return c, fmt.Errorf("%w: parameter without value", errDigestSyntax)
		}
		key := strings.ToLower(strings.TrimSpace(rest[:eq]))
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		var val string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
				}
				b.WriteByte(rest[i])
			}
			if i >= len(rest) {
				return c, fmt.Errorf("%w: unterminated quoted value of %s", errDigestSyntax, key)
			}
			val, rest = b.String(), rest[i+1:]
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			val, rest = strings.TrimSpace(rest[:end]), rest[end:]
		}
		if seen[key] {
			return c, fmt.Errorf("%w: parameter %s repeated", errDigestSyntax, key)
		}
		seen[key] = true
		switch key {
		case "username":
			c.username = val
		case "realm":
			c.realm = val
		case "nonce":
			c.nonce = val
		case "uri":
			c.uri = val
		case "response":
			c.response = val
		case "qop":
			c.qop = val
		case "nc":
			c.nc = val
		case "cnonce":
			c.cnonce = val
		case "algorithm":
			c.algorithm = val
		}
	}
	return c, nil
}

// digestHA1 is MD5(user:realm:password), the form AMT stores (§7.4).
func digestHA1(user, realm, password string) []byte {
	s := md5.Sum([]byte(user + ":" + realm + ":" + password))
	return s[:]
}

// parseDigestPassword reads SetAdminAclEntryEx.DigestPassword: base64 of
// the 16 MD5 bytes (Intel, RPS) or 32 hex digits (MeshCentral), §6.3, §7.4.
func parseDigestPassword(s string) ([]byte, bool) {
	s = strings.TrimSpace(s)
	if len(s) == 32 {
		if b, err := hex.DecodeString(s); err == nil {
			return b, true
		}
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 16 {
		return b, true
	}
	return nil, false
}

// authResult is the outcome of checking digest credentials.
type authResult int

const (
	authOK authResult = iota
	authFailed
	authStale // right password, expired or forgotten nonce: challenge with stale="true"
)

// checkDigest verifies r's Authorization header against the committed admin
// credentials; d.mu must be held.
func (d *Device) checkDigestLocked(r *http.Request, now time.Time) authResult {
	h := r.Header.Get("Authorization")
	if h == "" {
		return authFailed
	}
	c, err := parseDigest(h)
	if err != nil {
		return authFailed
	}
	st := &d.fw.committed
	if st.adminHA1 == nil || d.hasFaultLocked(FaultWrongPassword, now) {
		return authFailed
	}
	// An empty response is refused whatever else the header says: the
	// INTEL-SA-00075 probe (§8.3 security note).
	if c.response == "" || len(c.response) != 32 {
		return authFailed
	}
	if c.username != st.adminUser || c.realm != d.cfg.Realm || c.nonce == "" {
		return authFailed
	}
	if c.algorithm != "" && !strings.EqualFold(c.algorithm, "MD5") {
		return authFailed
	}
	if c.qop != "auth" || c.cnonce == "" || len(c.cnonce) > maxCNonceLength {
		return authFailed
	}
	// nc: eight hex digits (go-wsman) or a bare counter (MeshCentral "1").
	if c.nc == "" || len(c.nc) > 8 {
		return authFailed
	}
	nc, err := strconv.ParseUint(c.nc, 16, 32)
	if err != nil || nc == 0 {
		return authFailed
	}
	if !uriMatches(c.uri, r) {
		return authFailed
	}
	ha2 := md5.Sum([]byte(r.Method + ":" + c.uri))
	want := md5.Sum([]byte(hex.EncodeToString(st.adminHA1) + ":" + c.nonce + ":" + c.nc + ":" + c.cnonce + ":" + c.qop + ":" + hex.EncodeToString(ha2[:])))
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(c.response)), []byte(hex.EncodeToString(want[:]))) != 1 {
		return authFailed
	}
	for i := range d.nonces {
		n := &d.nonces[i]
		if n.value != c.nonce {
			continue
		}
		if now.Sub(n.issued) > nonceLifetime {
			return authStale
		}
		if nc <= n.lastNC {
			return authFailed // replayed request
		}
		n.lastNC = nc
		return authOK
	}
	return authStale
}

// uriMatches accepts the digest uri when it names the request target: the
// request-URI itself, or an absolute URL with that path (go-wsman v1.8.1
// signs the full endpoint URL on its first attempt).
func uriMatches(uri string, r *http.Request) bool {
	if uri == r.RequestURI {
		return true
	}
	u, err := url.Parse(uri)
	if err != nil || !u.IsAbs() {
		return false
	}
	return u.RequestURI() == r.RequestURI
}

// newNonceLocked issues a nonce for a challenge; d.mu must be held.
func (d *Device) newNonceLocked(now time.Time) string {
	v := base64.StdEncoding.EncodeToString(d.randomBytes(24))
	if len(d.nonces) >= maxNonces {
		copy(d.nonces, d.nonces[1:])
		d.nonces = d.nonces[:len(d.nonces)-1]
	}
	d.nonces = append(d.nonces, nonceEntry{value: v, issued: now})
	return v
}

// unauthorizedPage is the body of AMT's 401 (RPS AMTMessages.ts capture).
const unauthorizedPage = `<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">
<html><head><link rel=stylesheet href=/styles.css>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<title>Intel&reg; Active Management Technology</title></head>
<body>
<table class=header><tr><td valign=top nowrap><p class=top1>Intel<font class=r><sup>&reg;</sup></font> Active Management Technology</td></tr></table>
<br><h2 class=warn>Log on failed. Incorrect user name or password, or user account temporarily locked.</h2>
<p><form METHOD="GET" action="index.htm"><h2><input type=submit value="Try again"></h2></form>
</body></html>
`

// challenge answers 401 with a fresh nonce (§8.3 capture: the parameters
// and their spacing as AMT sends them; the connection is closed).
func (d *Device) challenge(w http.ResponseWriter, stale bool) {
	d.mu.Lock()
	nonce := d.newNonceLocked(time.Now())
	d.mu.Unlock()
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Digest realm="%s", nonce="%s",stale="%t",qop="auth"`, d.cfg.Realm, nonce, stale))
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Connection", "close")
	w.Header().Set("Content-Length", strconv.Itoa(len(unauthorizedPage)))
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(unauthorizedPage))
}
