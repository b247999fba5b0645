package probe_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/amtprov/amtprov/services/discovery/probe"
)

// pong builds a presence pong byte by byte from PROTOCOL.md §9.2.
func pong(mod func([]byte)) []byte {
	b := []byte{
		0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x40, 0x2A, 0x00, 0x10, // header, tag 0x2a
		0x00, 0x00, 0x01, 0x57, // IANA 343 (Intel)
		0x42, 0x61, // port 16993 big-endian
		0xF1, 0x06, // version 15.1; state 2 (post) + both ports
		0x01, 0x20, // ASF 1.0, interactions 0x20
		0, 0, 0, 0, 0, 0,
	}
	if mod != nil {
		mod(b)
	}
	return b
}

func TestAppendPing(t *testing.T) {
	got := probe.AppendPing(nil, 0x7A)
	want := []byte{0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, 0x7A, 0x00, 0x00}
	if !bytes.Equal(got, want) {
		t.Fatalf("ping % x, want % x", got, want)
	}
}

func TestParsePong(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want probe.Pong
		err  error
	}{
		{"post tls both", pong(nil), probe.Pong{Tag: 0x2A, Port: 16993, BothPorts: true, Major: 15, Minor: 1, State: 2}, nil},
		{"in plain", pong(func(b []byte) { b[16], b[17], b[18], b[19] = 0x42, 0x60, 0xB0, 0x01 }), probe.Pong{Tag: 0x2A, Port: 16992, Major: 11, Minor: 0, State: 1}, nil},
		{"pre", pong(func(b []byte) { b[19] = 0x00 }), probe.Pong{Tag: 0x2A, Port: 16993, Major: 15, Minor: 1, State: 0}, nil},
		{"empty", nil, probe.Pong{}, probe.ErrPongLength},
		{"short", pong(nil)[:27], probe.Pong{}, probe.ErrPongLength},
		{"long", append(pong(nil), 0), probe.Pong{}, probe.ErrPongLength},
		{"version", pong(func(b []byte) { b[0] = 0x07 }), probe.Pong{}, probe.ErrPongHeader},
		{"ack", pong(func(b []byte) { b[3] = 0x86 }), probe.Pong{}, probe.ErrPongHeader},
		{"ipmi class", pong(func(b []byte) { b[3] = 0x07 }), probe.Pong{}, probe.ErrPongHeader},
		{"asf iana", pong(func(b []byte) { b[7] = 0xBF }), probe.Pong{}, probe.ErrPongHeader},
		{"ping echoed", pong(func(b []byte) { b[8] = 0x80 }), probe.Pong{}, probe.ErrPongType},
		{"data length", pong(func(b []byte) { b[11] = 0x11 }), probe.Pong{}, probe.ErrPongDataLength},
		{"not intel", pong(func(b []byte) { b[15] = 0x58 }), probe.Pong{}, probe.ErrPongEnterprise},
		{"not amt", pong(func(b []byte) { b[21] = 0x80 }), probe.Pong{}, probe.ErrPongNotAMT},
		{"state 3", pong(func(b []byte) { b[19] = 0x03 }), probe.Pong{}, probe.ErrPongState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := probe.ParsePong(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			var pe *probe.PongError
			if tt.err != nil && !errors.As(err, &pe) {
				t.Fatalf("err %T is not a *PongError", err)
			}
			if got != tt.want {
				t.Fatalf("pong = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseHead(t *testing.T) {
	const amt303 = "HTTP/1.1 303 See Other\r\nLocation: /logon.htm\r\nContent-Length: 0\r\nServer: Intel(R) Active Management Technology 16.1.25.2124\r\n\r\n"
	tests := []struct {
		name    string
		in      string
		version string
		status  int
		err     error
	}{
		{"amt 303", amt303, "16.1.25.2124", 303, nil},
		{"three parts, LF only, body after", "HTTP/1.0 200 OK\nserver: Intel(R) Active Management Technology 7.1.91\n\n<html>", "7.1.91", 200, nil},
		{"status without reason", "HTTP/1.1 401\r\nServer: Intel(R) Active Management Technology 3.0.5\r\n\r\n", "3.0.5", 401, nil},
		{"first server wins", "HTTP/1.1 303 x\r\nServer: Intel(R) Active Management Technology 12.0.45.1509\r\nServer: nginx\r\n\r\n", "12.0.45.1509", 303, nil},
		{"truncated", amt303[:40], "", 0, probe.ErrHeadTruncate},
		{"empty", "", "", 0, probe.ErrHeadTruncate},
		{"huge header", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", probe.MaxHead) + "\r\n\r\n", "", 0, probe.ErrHeadTooLarge},
		{"huge never ends", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", probe.MaxHead), "", 0, probe.ErrHeadTooLarge},
		{"garbage", "\x00\x01\x02\xff\r\n\r\n", "", 0, probe.ErrStatusLine},
		{"ssh", "SSH-2.0-OpenSSH_9.6\r\n\r\n", "", 0, probe.ErrStatusLine},
		{"bad status", "HTTP/1.1 99x OK\r\n\r\n", "", 0, probe.ErrStatusLine},
		{"folded", "HTTP/1.1 200 OK\r\nServer: a\r\n b\r\n\r\n", "", 0, probe.ErrHeaderLine},
		{"no colon", "HTTP/1.1 200 OK\r\nServer\r\n\r\n", "", 0, probe.ErrHeaderLine},
		{"no server", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "", 0, probe.ErrNoServer},
		{"other server", "HTTP/1.1 200 OK\r\nServer: Apache/2.4\r\n\r\n", "", 0, probe.ErrNotAMT},
		{"two parts", "HTTP/1.1 200 OK\r\nServer: Intel(R) Active Management Technology 16.1\r\n\r\n", "", 0, probe.ErrVersion},
		{"five parts", "HTTP/1.1 200 OK\r\nServer: Intel(R) Active Management Technology 1.2.3.4.5\r\n\r\n", "", 0, probe.ErrVersion},
		{"letters", "HTTP/1.1 200 OK\r\nServer: Intel(R) Active Management Technology 16.x.25\r\n\r\n", "", 0, probe.ErrVersion},
		{"negative", "HTTP/1.1 200 OK\r\nServer: Intel(R) Active Management Technology 16.-1.25\r\n\r\n", "", 0, probe.ErrVersion},
		{"huge number", "HTTP/1.1 200 OK\r\nServer: Intel(R) Active Management Technology 16.1.99999999999999999999\r\n\r\n", "", 0, probe.ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := probe.ParseHead([]byte(tt.in))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if b.Version != tt.version || b.Status != tt.status {
				t.Fatalf("banner = %+v, want version %q status %d", b, tt.version, tt.status)
			}
			if err != nil && len(err.Error()) > 200 {
				t.Fatalf("error message too long (%d bytes): hostile input must not be echoed in full", len(err.Error()))
			}
		})
	}
}

func TestHeadComplete(t *testing.T) {
	for in, want := range map[string]bool{"HTTP/1.1 200 OK\r\n": false, "HTTP/1.1 200 OK\r\n\r\n": true, "a\n\nb": true, "": false} {
		if got := probe.HeadComplete([]byte(in)); got != want {
			t.Errorf("HeadComplete(%q) = %v", in, got)
		}
	}
}
