package wsman

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
)

// challenge is a parsed WWW-Authenticate: Digest header (PROTOCOL.md §8.3).
type challenge struct {
	realm, nonce, opaque, qop, algorithm string
	stale                                bool
}

// maxChallengeLen bounds the header we parse.
const maxChallengeLen = 2048

// parseChallenge reads a Digest challenge, e.g.
// Digest realm="Digest:727734D6...", nonce="B9AX94i...",stale="false",qop="auth".
func parseChallenge(h string) (challenge, error) {
	var c challenge
	if len(h) > maxChallengeLen {
		return c, fmt.Errorf("digest challenge longer than %d bytes", maxChallengeLen)
	}
	rest, ok := cutPrefixFold(strings.TrimSpace(h), "Digest ")
	if !ok {
		return c, fmt.Errorf("authentication scheme is not Digest")
	}
	for rest != "" {
		rest = strings.TrimLeft(rest, " ,\t")
		if rest == "" {
			break
		}
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return c, fmt.Errorf("malformed digest challenge parameter")
		}
		key := strings.ToLower(strings.TrimSpace(rest[:eq]))
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		var val string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				return c, fmt.Errorf("unterminated quoted value in digest challenge")
			}
			val, rest = rest[1:1+end], rest[2+end:]
		} else {
			end := strings.IndexAny(rest, ", \t")
			if end < 0 {
				end = len(rest)
			}
			val, rest = rest[:end], rest[end:]
		}
		switch key {
		case "realm":
			c.realm = val
		case "nonce":
			c.nonce = val
		case "opaque":
			c.opaque = val
		case "qop":
			c.qop = val
		case "algorithm":
			c.algorithm = val
		case "stale":
			c.stale = strings.EqualFold(val, "true")
		}
	}
	if c.nonce == "" {
		return c, fmt.Errorf("digest challenge has no nonce")
	}
	if c.algorithm != "" && !strings.EqualFold(c.algorithm, "MD5") {
		return c, fmt.Errorf("digest algorithm %q not supported (MD5 only)", truncate(c.algorithm, 20))
	}
	if c.qop != "" && !qopHasAuth(c.qop) {
		return c, fmt.Errorf("digest qop %q not supported (auth only)", truncate(c.qop, 20))
	}
	return c, nil
}

func qopHasAuth(qop string) bool {
	for _, q := range strings.Split(qop, ",") {
		if strings.TrimSpace(q) == "auth" {
			return true
		}
	}
	return false
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// digestAuth holds the current challenge and nonce count for one client:
// AMT keeps digest sessions across keep-alive requests (§8.3), so the
// client answers the last challenge pre-emptively and only meets a 401
// when the nonce goes stale.
type digestAuth struct {
	user, pass string

	mu sync.Mutex
	ch *challenge
	nc uint32
}

// header returns the Authorization header for a request, or "" when no
// challenge has been seen yet.
func (d *digestAuth) header(method, uri string) (string, error) {
	d.mu.Lock()
	if d.ch == nil {
		d.mu.Unlock()
		return "", nil
	}
	ch := *d.ch
	d.nc++
	nc := d.nc
	d.mu.Unlock()
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("digest cnonce: %w", err)
	}
	return digestHeader(ch, d.user, d.pass, method, uri, nc, hex.EncodeToString(raw[:])), nil
}

// update records a new challenge and restarts the nonce count.
func (d *digestAuth) update(ch challenge) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ch = &ch
	d.nc = 0
}

// forget drops the challenge (after a refusal).
func (d *digestAuth) forget() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ch = nil
}

// digestHeader computes RFC 2617 qop=auth (or RFC 2069 without qop):
// HA1 = MD5(user:realm:pass), HA2 = MD5(method:uri),
// response = MD5(HA1:nonce:nc:cnonce:qop:HA2) (§8.3). nc is 8 hex digits as
// go-wsman sends it.
func digestHeader(ch challenge, user, pass, method, uri string, nc uint32, cnonce string) string {
	ha1 := md5hex(user + ":" + ch.realm + ":" + pass)
	ha2 := md5hex(method + ":" + uri)
	var b strings.Builder
	fmt.Fprintf(&b, `Digest username="%s", realm="%s", nonce="%s", uri="%s"`, quote(user), quote(ch.realm), quote(ch.nonce), quote(uri))
	if ch.qop != "" {
		ncs := fmt.Sprintf("%08x", nc)
		resp := md5hex(ha1 + ":" + ch.nonce + ":" + ncs + ":" + cnonce + ":auth:" + ha2)
		fmt.Fprintf(&b, `, qop=auth, nc=%s, cnonce="%s", response="%s"`, ncs, cnonce, resp)
	} else {
		fmt.Fprintf(&b, `, response="%s"`, md5hex(ha1+":"+ch.nonce+":"+ha2))
	}
	if ch.opaque != "" {
		fmt.Fprintf(&b, `, opaque="%s"`, quote(ch.opaque))
	}
	if ch.algorithm != "" {
		b.WriteString(`, algorithm=MD5`)
	}
	return b.String()
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// quoteEscaper escapes a quoted-string value (backslash and double quote).
// It is built once: a strings.Replacer built per call cost more than the
// rest of the header. Replace returns s itself, without allocating, when
// there is nothing to escape.
var quoteEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// quote escapes a quoted-string value; it runs for every parameter of every
// authenticated request.
func quote(s string) string { return quoteEscaper.Replace(s) }
