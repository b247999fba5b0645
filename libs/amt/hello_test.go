package amt_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/amtprov/amtprov/libs/amt"
)

// The RPS test vector of PROTOCOL.md §4.5: wire bytes and the UUID text.
var rpsUUIDBytes = []byte{16, 149, 172, 75, 166, 4, 33, 67, 186, 226, 212, 93, 223, 7, 182, 132}

const rpsUUID = "4bac9510-04a6-4321-bae2-d45ddf07b684"

func TestUUIDSMBIOSOrder(t *testing.T) {
	var u amt.UUID
	copy(u[:], rpsUUIDBytes)
	if got := u.String(); got != rpsUUID {
		t.Fatalf("String() = %s, want %s", got, rpsUUID)
	}
	back, err := amt.ParseUUID("4BAC9510-04A6-4321-BAE2-D45DDF07B684")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back[:], rpsUUIDBytes) {
		t.Fatalf("ParseUUID wire bytes = %v, want %v", back[:], rpsUUIDBytes)
	}
	for _, bad := range []string{"", "4bac9510-04a6-4321-bae2-d45ddf07b68", "4bac9510x04a6-4321-bae2-d45ddf07b684", "4bac9510-04a6-4321-bae2-d45ddf07b6zz"} {
		if _, err := amt.ParseUUID(bad); err == nil {
			t.Errorf("ParseUUID(%q) accepted", bad)
		}
	}
}

func mustHash(t testing.TB, s string) amt.RootHash {
	t.Helper()
	h, err := amt.ParseRootHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pkiHello is a v3 hello with the RPS sample root (PROTOCOL.md §6.2) and a SHA-1 and SHA-384 entry.
func pkiHello(t testing.TB) amt.Hello {
	var u amt.UUID
	copy(u[:], rpsUUIDBytes)
	return amt.Hello{
		AdminCredentialsSet: true,
		InterfaceVersion:    amt.InterfacePKI,
		RetryCount:          1,
		UUID:                u,
		RootHashes: []amt.RootHash{
			mustHash(t, "sha256:82f2ed575db4abe462499cf550dbff9584980d70a0272894639c3653b9ad932c"),
			mustHash(t, "sha1:47d7b7db23f3e300189f54802482b1bd18b945ef"),
			{Alg: amt.HashSHA384, Sum: bytes.Repeat([]byte{0xab}, 48)},
		},
	}
}

func TestHelloV3Layout(t *testing.T) {
	h := pkiHello(t)
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Header, little-endian (PROTOCOL.md §4.2).
	wantHdr := "0100" + "0300" + "01000000" + hex.EncodeToString(rpsUUIDBytes)
	if got := hex.EncodeToString(b[:24]); got != wantHdr {
		t.Fatalf("header = %s, want %s", got, wantHdr)
	}
	if b[24] != 3 || b[25] != 2 || b[26] != 32 || b[59] != 1 || b[60] != 20 || b[81] != 3 || b[82] != 48 {
		t.Fatalf("hash entries laid out wrongly: % x", b[24:84])
	}
	if len(b) != 25+2+32+2+20+2+48 {
		t.Fatalf("len = %d", len(b))
	}
	got, err := amt.DecodeHello(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.UUID.String() != rpsUUID || !got.AdminCredentialsSet || got.RetryCount != 1 || got.InterfaceVersion != 3 {
		t.Fatalf("decoded header wrong: %+v", got)
	}
	if len(got.RootHashes) != 3 {
		t.Fatalf("decoded %d hashes", len(got.RootHashes))
	}
	for i := range got.RootHashes {
		if !got.RootHashes[i].Equal(h.RootHashes[i]) {
			t.Errorf("hash %d = %s, want %s", i, got.RootHashes[i], h.RootHashes[i])
		}
	}
	// The result must not alias the input buffer: listeners reuse it.
	for i := range b {
		b[i] = 0
	}
	if got.RootHashes[0].Hex() != "82f2ed575db4abe462499cf550dbff9584980d70a0272894639c3653b9ad932c" {
		t.Fatal("decoded hashes alias the input")
	}
}

func TestHelloV2RoundTrip(t *testing.T) {
	var u amt.UUID
	copy(u[:], rpsUUIDBytes)
	h := amt.Hello{InterfaceVersion: amt.InterfacePSK, UUID: u, PID: "0000037M"}
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != amt.HelloV2Size || string(b[24:]) != "0000037M" {
		t.Fatalf("v2 wire = % x", b)
	}
	got, err := amt.DecodeHello(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != "0000037M" || got.AdminCredentialsSet || got.RootHashes != nil {
		t.Fatalf("decoded %+v", got)
	}
}

func TestHelloErrors(t *testing.T) {
	good, err := pkiHello(t).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	v2, err := amt.Hello{InterfaceVersion: amt.InterfacePSK, UUID: amt.UUID{1}, PID: "0000037M"}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	mod := func(b []byte, f func([]byte) []byte) []byte { return f(append([]byte(nil), b...)) }
	cases := []struct {
		name   string
		in     []byte
		want   error
		reason string
	}{
		{"empty", nil, amt.ErrShort, "short"},
		{"header cut", good[:23], amt.ErrShort, "short"},
		{"no hash count", good[:24], amt.ErrShort, "short"},
		{"hash cut", good[:40], amt.ErrShort, "short"},
		{"entry header cut", good[:60], amt.ErrShort, "short"},
		{"unknown version", mod(good, func(b []byte) []byte { b[2] = 4; return b }), amt.ErrUnknownVersion, "unknown_version"},
		{"version 1", mod(good, func(b []byte) []byte { b[2] = 1; return b }), amt.ErrUnknownVersion, "unknown_version"},
		{"admin creds 2", mod(good, func(b []byte) []byte { b[0] = 2; return b }), amt.ErrBadAdminCredential, "bad_admin_credentials"},
		{"admin creds high byte", mod(good, func(b []byte) []byte { b[1] = 1; return b }), amt.ErrBadAdminCredential, "bad_admin_credentials"},
		{"hash type 0", mod(good, func(b []byte) []byte { b[25] = 0; return b }), amt.ErrBadHashType, "bad_hash_type"},
		{"hash type 4", mod(good, func(b []byte) []byte { b[25] = 4; return b }), amt.ErrBadHashType, "bad_hash_type"},
		{"sha256 with 20 bytes", mod(good, func(b []byte) []byte { b[26] = 20; return b }), amt.ErrBadHashLength, "bad_hash_length"},
		{"count too high", mod(good, func(b []byte) []byte { b[24] = 4; return b }), amt.ErrHashCountMismatch, "hash_count_mismatch"},
		{"count too low", mod(good, func(b []byte) []byte { b[24] = 2; return b }), amt.ErrTrailingGarbage, "trailing_garbage"},
		{"trailing byte", append(append([]byte(nil), good...), 0), amt.ErrTrailingGarbage, "trailing_garbage"},
		{"v2 trailing", append(append([]byte(nil), v2...), 'X'), amt.ErrTrailingGarbage, "trailing_garbage"},
		{"v2 short", v2[:30], amt.ErrShort, "short"},
		{"v2 bad checksum", mod(v2, func(b []byte) []byte { b[31] = 'N'; return b }), amt.ErrBadPID, "bad_pid"},
		{"v2 lower case", mod(v2, func(b []byte) []byte { b[30] = '3' + 0x20; return b }), amt.ErrBadPID, "bad_pid"},
		{"zero uuid", mod(good, func(b []byte) []byte { copy(b[8:24], make([]byte, 16)); return b }), amt.ErrZeroUUID, "zero_uuid"},
		{"too large", make([]byte, amt.MaxHelloSize+1), amt.ErrTooLarge, "too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := amt.DecodeHello(c.in)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			var he *amt.HelloError
			if !errors.As(err, &he) {
				t.Fatalf("err %T is not *HelloError", err)
			}
			if got := amt.RejectReason(err); got != c.reason {
				t.Fatalf("reason = %q, want %q", got, c.reason)
			}
		})
	}
}

func TestComplete(t *testing.T) {
	good, err := pkiHello(t).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(good); i++ {
		if _, ok, err := amt.Complete(good[:i]); ok || err != nil {
			t.Fatalf("Complete(%d of %d bytes) = ok %v err %v", i, len(good), ok, err)
		}
	}
	n, ok, err := amt.Complete(append(good, 1, 2, 3))
	if !ok || err != nil || n != len(good) {
		t.Fatalf("Complete(full+3) = %d %v %v", n, ok, err)
	}
	bad := append([]byte(nil), good...)
	bad[2] = 9
	if _, _, err := amt.Complete(bad); !errors.Is(err, amt.ErrUnknownVersion) {
		t.Fatalf("Complete(bad version) err = %v", err)
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	for name, h := range map[string]amt.Hello{
		"bad version": {InterfaceVersion: 7},
		"bad pid":     {InterfaceVersion: amt.InterfacePSK, PID: "0000037N"},
		"bad hash":    {InterfaceVersion: amt.InterfacePKI, RootHashes: []amt.RootHash{{Alg: amt.HashSHA256, Sum: []byte{1}}}},
		"many hashes": {InterfaceVersion: amt.InterfacePKI, RootHashes: make([]amt.RootHash, 256)},
	} {
		if _, err := h.MarshalBinary(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

func TestParseRootHash(t *testing.T) {
	for _, c := range []struct {
		in   string
		alg  amt.HashAlg
		fail bool
	}{
		{"sha256:82f2ed575db4abe462499cf550dbff9584980d70a0272894639c3653b9ad932c", amt.HashSHA256, false},
		{"SHA-1:47d7b7db23f3e300189f54802482b1bd18b945ef", amt.HashSHA1, false},
		{"47d7b7db23f3e300189f54802482b1bd18b945ef", amt.HashSHA1, false},
		{"sha384:" + hex.EncodeToString(make([]byte, 48)), amt.HashSHA384, false},
		{"sha256:47d7b7db23f3e300189f54802482b1bd18b945ef", 0, true},
		{"md5:00", 0, true},
		{"sha1:zz", 0, true},
		{"abc", 0, true},
	} {
		h, err := amt.ParseRootHash(c.in)
		if (err != nil) != c.fail {
			t.Errorf("ParseRootHash(%q) err = %v", c.in, err)
			continue
		}
		if !c.fail && h.Alg != c.alg {
			t.Errorf("ParseRootHash(%q) alg = %s", c.in, h.Alg)
		}
	}
}

func BenchmarkDecodeHelloV3(b *testing.B) {
	h := pkiHello(b)
	// A realistic hello: the 19 default roots plus one user root, about 800 bytes.
	for len(h.RootHashes) < 20 {
		h.RootHashes = append(h.RootHashes, amt.RootHash{Alg: amt.HashSHA256, Sum: bytes.Repeat([]byte{byte(len(h.RootHashes))}, 32)})
	}
	buf, err := h.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := amt.DecodeHello(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeHelloV3(b *testing.B) {
	h := pkiHello(b)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = h.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
