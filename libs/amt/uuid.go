package amt

import (
	"encoding/hex"
	"fmt"
)

// UUID is a device UUID as it travels in a hello: 16 bytes in SMBIOS byte
// order, where the first three groups are little-endian (PROTOCOL.md §4.5).
// Its String form is the canonical text form operators see in the BIOS,
// MeshCentral and Open AMT, e.g. 4bac9510-04a6-4321-bae2-d45ddf07b684.
type UUID [16]byte

// String renders b3b2b1b0-b5b4-b7b6-b8b9-b10..b15 in lower-case hex.
func (u UUID) String() string {
	var t [16]byte
	t[0], t[1], t[2], t[3] = u[3], u[2], u[1], u[0]
	t[4], t[5] = u[5], u[4]
	t[6], t[7] = u[7], u[6]
	copy(t[8:], u[8:])
	var out [36]byte
	hex.Encode(out[0:8], t[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], t[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], t[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], t[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], t[10:16])
	return string(out[:])
}

// IsZero reports whether every byte is zero (firmware never sends that).
func (u UUID) IsZero() bool { return u == UUID{} }

// ParseUUID reads the canonical text form (case-insensitive) and returns the
// wire (SMBIOS) byte order.
func ParseUUID(s string) (UUID, error) {
	var u UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("parse uuid %q: want 8-4-4-4-12 hex digits", s)
	}
	var t [16]byte
	groups := [][2]int{{0, 8}, {9, 13}, {14, 18}, {19, 23}, {24, 36}}
	off := 0
	for _, g := range groups {
		n, err := hex.Decode(t[off:], []byte(s[g[0]:g[1]]))
		if err != nil {
			return u, fmt.Errorf("parse uuid %q: %w", s, err)
		}
		off += n
	}
	u[0], u[1], u[2], u[3] = t[3], t[2], t[1], t[0]
	u[4], u[5] = t[5], t[4]
	u[6], u[7] = t[7], t[6]
	copy(u[8:], t[8:])
	return u, nil
}
