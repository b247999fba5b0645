package rmcp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func TestParsePingMeshCentralBytes(t *testing.T) {
	// The ping MeshCentral's amtscanner.js sends (PROTOCOL.md §9.2).
	raw, _ := hex.DecodeString("06000006000011be80000000")
	p, err := ParsePing(raw)
	if err != nil {
		t.Fatalf("ParsePing: %v", err)
	}
	if p.Seq != 0 || p.Tag != 0 {
		t.Fatalf("got %+v, want zero seq and tag", p)
	}
	if got := AppendPing(nil, p); !bytes.Equal(got, raw) {
		t.Fatalf("AppendPing = % x, want % x", got, raw)
	}
}

func TestParsePingRejects(t *testing.T) {
	good := AppendPing(nil, Ping{Seq: 0xFF, Tag: 7})
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"short", good[:11], ErrShort},
		{"too long", make([]byte, 65), ErrTooLong},
		{"version", mut(func(b []byte) []byte { b[0] = 7; return b }), ErrVersion},
		{"ack", mut(func(b []byte) []byte { b[3] = 0x86; return b }), ErrAck},
		{"ipmi class", mut(func(b []byte) []byte { b[3] = 0x07; return b }), ErrClass},
		{"enterprise", mut(func(b []byte) []byte { b[7] = 0xBF; return b }), ErrEnterprise},
		{"pong", mut(func(b []byte) []byte { b[8] = TypePong; return b }), ErrNotPing},
		{"length lies", mut(func(b []byte) []byte { b[11] = 4; return b }), ErrDataLength},
		{"trailing", mut(func(b []byte) []byte { return append(b, 0) }), ErrDataLength},
		{"data", mut(func(b []byte) []byte { b[11] = 2; return append(b, 1, 2) }), ErrPingHasData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePing(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParsePing(% x) error = %v, want %v", tt.in, err, tt.want)
			}
			var pe *PingError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *PingError", err)
			}
		})
	}
}

func TestPongBytes(t *testing.T) {
	got := AppendPong(nil, Pong{Seq: 0, Tag: 9, Port: 16993, BothPorts: true, Major: 11, Minor: 8, State: 1})
	want, _ := hex.DecodeString("06000006000011be4009001000000157" + "4261" + "b8" + "05" + "0120" + "000000000000")
	if !bytes.Equal(got, want) {
		t.Fatalf("pong\n got % x\nwant % x", got, want)
	}
}

func TestPongRoundTrip(t *testing.T) {
	tests := []Pong{
		{Seq: 0xFF, Tag: 1, Port: 16992, Major: 12, Minor: 0, State: 0},
		{Seq: 3, Tag: 200, Port: 16993, Major: 15, Minor: 0, State: 2},
		{Tag: 5, Port: 26992, BothPorts: true, Major: 11, Minor: 8, State: 1},
	}
	for _, p := range tests {
		got, err := ParsePong(AppendPong(nil, p))
		if err != nil {
			t.Fatalf("ParsePong(%+v): %v", p, err)
		}
		if got != p {
			t.Fatalf("round trip: got %+v, want %+v", got, p)
		}
	}
}

func TestPongSaturatesMajorVersion(t *testing.T) {
	got, err := ParsePong(AppendPong(nil, Pong{Port: 16992, Major: 16, Minor: 1, State: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Major != 15 || got.Minor != 1 {
		t.Fatalf("version nibbles %d.%d, want 15.1", got.Major, got.Minor)
	}
}

func FuzzParsePing(f *testing.F) {
	f.Add(AppendPing(nil, Ping{}))
	f.Add(AppendPing(nil, Ping{Seq: 0xFF, Tag: 0x42}))
	f.Add([]byte{6, 0, 0, 0x86, 0, 0, 0x11, 0xBE})
	f.Add(AppendPong(nil, Pong{Port: 16992}))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePing(b)
		if err != nil {
			var pe *PingError
			if !errors.As(err, &pe) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// Whatever parses is a 12-byte ASF presence ping (reserved bytes
		// are ignored, as receivers of DSP0136 messages do), and its
		// canonical encoding parses to the same ping.
		if len(b) != HeaderSize || b[0] != Version || b[8] != TypePing || b[11] != 0 {
			t.Fatalf("accepted a datagram that is not a presence ping: % x", b)
		}
		again, err := ParsePing(AppendPing(nil, p))
		if err != nil || again != p {
			t.Fatalf("re-encoding %+v parses as %+v, %v", p, again, err)
		}
	})
}
