package probe_test

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/amtprov/amtprov/services/discovery/probe"
)

// FuzzPong: ParsePong never panics, accepts only 28-byte datagrams, and
// what it accepts has in-range fields that agree with the raw bytes.
func FuzzPong(f *testing.F) {
	f.Add(pong(nil))
	f.Add(pong(func(b []byte) { b[19] = 0x01 }))
	f.Add(probe.AppendPing(nil, 1))
	f.Add([]byte{})
	f.Add(make([]byte, 28))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := probe.ParsePong(b)
		if err != nil {
			return
		}
		if len(b) != 28 {
			t.Fatalf("accepted %d bytes", len(b))
		}
		if p.State < 0 || p.State > 2 || p.Major > 15 || p.Minor > 15 || p.Major < 0 || p.Minor < 0 {
			t.Fatalf("out of range: %+v", p)
		}
		if p.Port != binary.BigEndian.Uint16(b[16:18]) || p.Tag != b[9] {
			t.Fatalf("fields disagree with bytes: %+v % x", p, b)
		}
	})
}

// FuzzBanner: ParseHead never panics on any response bytes, and what it
// accepts is an AMT banner with a numeric 3- or 4-part version.
func FuzzBanner(f *testing.F) {
	f.Add([]byte("HTTP/1.1 303 See Other\r\nLocation: /logon.htm\r\nContent-Length: 0\r\nServer: Intel(R) Active Management Technology 16.1.25.2124\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\nServer: Intel(R) Active Management Technology 7.1.91\n\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nServer: Apache\r\n\r\n"))
	f.Add([]byte("\x00\xff\r\n\r\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := probe.ParseHead(b)
		if err != nil {
			if len(err.Error()) > 200 {
				t.Fatalf("error echoes too much input: %d bytes", len(err.Error()))
			}
			return
		}
		if n := strings.Count(v.Version, "."); n < 2 || n > 3 {
			t.Fatalf("accepted version %q", v.Version)
		}
		if v.Status < 100 || v.Status > 599 || v.Major < 0 || v.Minor < 0 {
			t.Fatalf("accepted %+v", v)
		}
	})
}
