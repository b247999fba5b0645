package amt

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Interface versions carried in the hello header (PROTOCOL.md §4.2).
const (
	InterfacePSK uint16 = 2 // PID in the hello; removed in AMT 11.0
	InterfacePKI uint16 = 3 // list of trusted root-certificate hashes
)

// Sizes of the hello wire format (PROTOCOL.md §4.2-§4.4).
const (
	HelloHeaderSize = 24 // admin-creds(2) version(2) retry(4) uuid(16)
	HelloV2Size     = HelloHeaderSize + PIDLength
	helloV3MinSize  = HelloHeaderSize + 1
	// MaxHelloSize bounds a v3 hello: 255 entries of the largest hash plus
	// their two-byte entry headers. Real hellos are about 800 bytes.
	MaxHelloSize = helloV3MinSize + 255*(2+48)
	// MaxRetryCount is the largest retry count the IRG documents (0-14).
	// Larger values are accepted (the sources disagree, §3) but recorded.
	MaxRetryCount = 14
)

// Sentinel reasons a hello is rejected. A *HelloError wraps exactly one of
// them, so callers use errors.Is; Reason gives the stable metric label.
var (
	ErrShort              = errors.New("hello too short")
	ErrUnknownVersion     = errors.New("unknown interface version")
	ErrBadHashType        = errors.New("unknown certificate hash type")
	ErrBadHashLength      = errors.New("hash length does not match its type")
	ErrHashCountMismatch  = errors.New("fewer hash entries than the count announces")
	ErrTrailingGarbage    = errors.New("bytes after the end of the hello")
	ErrBadAdminCredential = errors.New("admin-credentials field is neither 0 nor 1")
	ErrBadPID             = errors.New("invalid PID")
	ErrTooLarge           = errors.New("hello larger than any valid hello")
	ErrZeroUUID           = errors.New("all-zero device UUID")
)

var reasons = map[error]string{
	ErrShort:              "short",
	ErrUnknownVersion:     "unknown_version",
	ErrBadHashType:        "bad_hash_type",
	ErrBadHashLength:      "bad_hash_length",
	ErrHashCountMismatch:  "hash_count_mismatch",
	ErrTrailingGarbage:    "trailing_garbage",
	ErrBadAdminCredential: "bad_admin_credentials",
	ErrBadPID:             "bad_pid",
	ErrTooLarge:           "too_large",
	ErrZeroUUID:           "zero_uuid",
}

// HelloError says how and where a packet failed to be a hello.
type HelloError struct {
	Err    error // one of the Err* sentinels
	Offset int   // byte offset at which the problem was found
	Detail string
}

func (e *HelloError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("decode hello: %v at offset %d", e.Err, e.Offset)
	}
	return fmt.Sprintf("decode hello: %v at offset %d: %s", e.Err, e.Offset, e.Detail)
}

func (e *HelloError) Unwrap() error { return e.Err }

// Reason is a short stable label ("short", "bad_hash_type", ...) for metrics.
func (e *HelloError) Reason() string { return reasons[e.Err] }

// RejectReason returns the metric label for any error from this package,
// "invalid" for other errors.
func RejectReason(err error) string {
	var he *HelloError
	if errors.As(err, &he) {
		return he.Reason()
	}
	for s, r := range reasons {
		if errors.Is(err, s) {
			return r
		}
	}
	return "invalid"
}

// RejectReasons lists every label RejectReason can return, so metrics can be
// pre-registered at zero.
func RejectReasons() []string {
	out := make([]string, 0, len(reasons)+1)
	for _, r := range reasons {
		out = append(out, r)
	}
	return append(out, "invalid")
}

func helloErr(sentinel error, off int, format string, args ...any) error {
	return &HelloError{Err: sentinel, Offset: off, Detail: fmt.Sprintf(format, args...)}
}

// Hello is a setup-mode hello as AMT firmware sends it.
type Hello struct {
	AdminCredentialsSet bool
	InterfaceVersion    uint16
	RetryCount          uint32
	UUID                UUID
	PID                 string     // v2 only: 8 characters, no dash
	RootHashes          []RootHash // v3 only
}

// Complete reports whether b begins with a whole hello, and its length. It
// lets a listener act as soon as the bytes are in rather than waiting for the
// close. err is non-nil once b can no longer become a valid hello.
func Complete(b []byte) (n int, ok bool, err error) {
	if len(b) < HelloHeaderSize {
		return 0, false, nil
	}
	switch v := binary.LittleEndian.Uint16(b[2:4]); v {
	case InterfacePSK:
		return HelloV2Size, len(b) >= HelloV2Size, nil
	case InterfacePKI:
		if len(b) < helloV3MinSize {
			return 0, false, nil
		}
		count := int(b[HelloHeaderSize])
		off := helloV3MinSize
		for i := 0; i < count; i++ {
			if len(b) < off+2 {
				return 0, false, nil
			}
			off += 2 + int(b[off+1])
		}
		return off, len(b) >= off, nil
	default:
		return 0, false, helloErr(ErrUnknownVersion, 2, "version %d", v)
	}
}

// DecodeHello parses one complete hello. The result does not alias b.
func DecodeHello(b []byte) (Hello, error) {
	var h Hello
	if len(b) > MaxHelloSize {
		return h, helloErr(ErrTooLarge, MaxHelloSize, "%d bytes, at most %d", len(b), MaxHelloSize)
	}
	if len(b) < HelloHeaderSize {
		return h, helloErr(ErrShort, len(b), "%d bytes, header needs %d", len(b), HelloHeaderSize)
	}
	admin := binary.LittleEndian.Uint16(b[0:2])
	if admin > 1 {
		return h, helloErr(ErrBadAdminCredential, 0, "value %d", admin)
	}
	h.AdminCredentialsSet = admin == 1
	h.InterfaceVersion = binary.LittleEndian.Uint16(b[2:4])
	h.RetryCount = binary.LittleEndian.Uint32(b[4:8])
	copy(h.UUID[:], b[8:24])
	if h.UUID.IsZero() {
		return h, helloErr(ErrZeroUUID, 8, "")
	}
	switch h.InterfaceVersion {
	case InterfacePSK:
		return h, decodeV2(&h, b)
	case InterfacePKI:
		return h, decodeV3(&h, b)
	default:
		return h, helloErr(ErrUnknownVersion, 2, "version %d (want 2 or 3)", h.InterfaceVersion)
	}
}

func decodeV2(h *Hello, b []byte) error {
	if len(b) < HelloV2Size {
		return helloErr(ErrShort, len(b), "%d bytes, a v2 hello has %d", len(b), HelloV2Size)
	}
	if len(b) > HelloV2Size {
		return helloErr(ErrTrailingGarbage, HelloV2Size, "%d extra bytes", len(b)-HelloV2Size)
	}
	pid := string(b[HelloHeaderSize:HelloV2Size])
	if err := ValidatePID(pid); err != nil {
		return &HelloError{Err: ErrBadPID, Offset: HelloHeaderSize, Detail: err.Error()}
	}
	h.PID = pid
	return nil
}

func decodeV3(h *Hello, b []byte) error {
	if len(b) < helloV3MinSize {
		return helloErr(ErrShort, len(b), "no hash count")
	}
	count := int(b[HelloHeaderSize])
	off := helloV3MinSize
	// First pass validates and sizes, so that the digests share one allocation.
	total := 0
	for i := 0; i < count; i++ {
		if off == len(b) {
			return helloErr(ErrHashCountMismatch, off, "announced %d hashes, found %d", count, i)
		}
		if len(b) < off+2 {
			return helloErr(ErrShort, off, "hash entry %d header cut short", i)
		}
		alg, n := HashAlg(b[off]), int(b[off+1])
		if alg.Size() == 0 {
			return helloErr(ErrBadHashType, off, "entry %d has type %d", i, b[off])
		}
		if n != alg.Size() {
			return helloErr(ErrBadHashLength, off+1, "entry %d: %s with length %d", i, alg, n)
		}
		if len(b) < off+2+n {
			return helloErr(ErrShort, off+2, "entry %d: %d of %d hash bytes", i, len(b)-off-2, n)
		}
		off += 2 + n
		total += n
	}
	if off != len(b) {
		return helloErr(ErrTrailingGarbage, off, "%d extra bytes", len(b)-off)
	}
	if count == 0 {
		return nil
	}
	sums := make([]byte, total)
	h.RootHashes = make([]RootHash, count)
	off, at := helloV3MinSize, 0
	for i := range h.RootHashes {
		alg, n := HashAlg(b[off]), int(b[off+1])
		copy(sums[at:], b[off+2:off+2+n])
		h.RootHashes[i] = RootHash{Alg: alg, Sum: sums[at : at+n : at+n]}
		off += 2 + n
		at += n
	}
	return nil
}

// AppendBinary encodes h onto b as firmware would put it on the wire.
func (h Hello) AppendBinary(b []byte) ([]byte, error) {
	var hdr [HelloHeaderSize]byte
	if h.AdminCredentialsSet {
		hdr[0] = 1
	}
	binary.LittleEndian.PutUint16(hdr[2:4], h.InterfaceVersion)
	binary.LittleEndian.PutUint32(hdr[4:8], h.RetryCount)
	copy(hdr[8:], h.UUID[:])
	switch h.InterfaceVersion {
	case InterfacePSK:
		if err := ValidatePID(h.PID); err != nil {
			return b, fmt.Errorf("encode hello: %w", err)
		}
		b = append(b, hdr[:]...)
		return append(b, h.PID...), nil
	case InterfacePKI:
		if len(h.RootHashes) > 255 {
			return b, fmt.Errorf("encode hello: %d root hashes, at most 255", len(h.RootHashes))
		}
		b = append(b, hdr[:]...)
		b = append(b, byte(len(h.RootHashes)))
		for i, rh := range h.RootHashes {
			if rh.Alg.Size() == 0 || len(rh.Sum) != rh.Alg.Size() {
				return b, fmt.Errorf("encode hello: root hash %d: %s with %d bytes", i, rh.Alg, len(rh.Sum))
			}
			b = append(b, byte(rh.Alg), byte(len(rh.Sum)))
			b = append(b, rh.Sum...)
		}
		return b, nil
	default:
		return b, fmt.Errorf("encode hello: unknown interface version %d", h.InterfaceVersion)
	}
}

// MarshalBinary encodes h.
func (h Hello) MarshalBinary() ([]byte, error) { return h.AppendBinary(nil) }
