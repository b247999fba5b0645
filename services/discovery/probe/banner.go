package probe

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxHead is the most of an HTTP response discovery reads: the status line
// and headers of AMT's 303 fit in a few hundred bytes; a head that has not
// ended after MaxHead bytes is refused (ErrHeadTooLarge).
const MaxHead = 8 << 10

// bannerPrefix starts the Server header of AMT's web server (PROTOCOL.md
// §9.1); the version follows after one space.
const bannerPrefix = "Intel(R) Active Management Technology"

// Reasons a response head is not an AMT banner. A *BannerError wraps one.
var (
	ErrHeadTooLarge = errors.New("response head larger than the limit")
	ErrHeadTruncate = errors.New("response head ends before its blank line")
	ErrStatusLine   = errors.New("malformed HTTP status line")
	ErrHeaderLine   = errors.New("malformed header line")
	ErrNoServer     = errors.New("no Server header")
	ErrNotAMT       = errors.New("Server header is not Intel AMT's")
	ErrVersion      = errors.New("AMT version is not 3 or 4 numeric components")
)

// BannerError says why a response was not taken as AMT's.
type BannerError struct {
	Err error
	Got string // a short, printable excerpt of what was refused
}

func (e *BannerError) Error() string {
	if e.Got == "" {
		return "parse amt banner: " + e.Err.Error()
	}
	return fmt.Sprintf("parse amt banner: %v: %q", e.Err, e.Got)
}

func (e *BannerError) Unwrap() error { return e.Err }

func bannerErr(err error, got []byte) error {
	return &BannerError{Err: err, Got: excerpt(got)}
}

// excerpt keeps at most 64 printable bytes of hostile input for an error.
func excerpt(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '.'
		}
		return r
	}, string(b))
}

// Banner is what the unauthenticated HTTP answer of AMT's web server says.
type Banner struct {
	Status  int    // HTTP status (303 for GET / per §9.1)
	Version string // "a.b.c" or "a.b.c.d" exactly as the banner carries it
	Major   int
	Minor   int
}

// HeadComplete reports whether b holds a full response head (up to the
// blank line), so a reader knows when to stop.
func HeadComplete(b []byte) bool {
	return bytes.Contains(b, []byte("\r\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
}

// ParseHead reads the status line and headers of an HTTP/1.x response and
// returns the AMT banner from its Server header (PROTOCOL.md §9.1). Bytes
// after the head (the body) are ignored. It accepts CRLF or bare LF line
// ends, refuses heads above MaxHead, obsolete line folding, and any Server
// value that is not "Intel(R) Active Management Technology" followed by a
// version of three or four decimal components (as MeshCentral's scanner
// validates it).
func ParseHead(b []byte) (Banner, error) {
	end, sep := bytes.Index(b, []byte("\r\n\r\n")), 4
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 && (end < 0 || i < end) {
		end, sep = i, 2
	}
	if end < 0 {
		if len(b) >= MaxHead {
			return Banner{}, bannerErr(ErrHeadTooLarge, nil)
		}
		return Banner{}, bannerErr(ErrHeadTruncate, b)
	}
	if end+sep > MaxHead {
		return Banner{}, bannerErr(ErrHeadTooLarge, nil)
	}
	lines := strings.Split(strings.ReplaceAll(string(b[:end]), "\r\n", "\n"), "\n")
	status, err := parseStatusLine(lines[0])
	if err != nil {
		return Banner{}, err
	}
	var server string
	found := false
	for _, l := range lines[1:] {
		if l == "" || l[0] == ' ' || l[0] == '\t' {
			return Banner{}, bannerErr(ErrHeaderLine, []byte(l))
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return Banner{}, bannerErr(ErrHeaderLine, []byte(l))
		}
		if strings.EqualFold(name, "Server") && !found {
			server, found = strings.Trim(value, " \t"), true
		}
	}
	if !found {
		return Banner{}, bannerErr(ErrNoServer, nil)
	}
	v, err := ParseServer(server)
	if err != nil {
		return Banner{}, err
	}
	v.Status = status
	return v, nil
}

func parseStatusLine(l string) (int, error) {
	proto, rest, ok := strings.Cut(l, " ")
	if !ok || (proto != "HTTP/1.1" && proto != "HTTP/1.0") || len(rest) < 3 {
		return 0, bannerErr(ErrStatusLine, []byte(l))
	}
	code, err := strconv.Atoi(rest[:3])
	if err != nil || code < 100 || code > 599 || (len(rest) > 3 && rest[3] != ' ') {
		return 0, bannerErr(ErrStatusLine, []byte(l))
	}
	return code, nil
}

// ParseServer reads a Server header value:
// "Intel(R) Active Management Technology 16.1.25.2124".
func ParseServer(s string) (Banner, error) {
	rest, ok := strings.CutPrefix(s, bannerPrefix+" ")
	if !ok {
		return Banner{}, bannerErr(ErrNotAMT, []byte(s))
	}
	parts := strings.Split(rest, ".")
	if len(parts) < 3 || len(parts) > 4 {
		return Banner{}, bannerErr(ErrVersion, []byte(rest))
	}
	nums := make([]int, len(parts))
	for i, p := range parts {
		if p == "" || len(p) > 6 || strings.TrimLeft(p, "0123456789") != "" {
			return Banner{}, bannerErr(ErrVersion, []byte(rest))
		}
		nums[i], _ = strconv.Atoi(p) // all digits, at most 6: cannot fail
	}
	return Banner{Version: rest, Major: nums[0], Minor: nums[1]}, nil
}
