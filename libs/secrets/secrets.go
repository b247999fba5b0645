package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Environment variables read by LoadKeyring.
const (
	// EnvKeys holds "id1:base64key,id2:base64key"; the first key is active.
	EnvKeys = "AMTPROV_SECRET_KEYS"
	// EnvKeysFile names a file with the same content (commas or newlines
	// between entries; blank lines and lines starting with # are ignored).
	EnvKeysFile = "AMTPROV_SECRET_KEYS_FILE"
)

// KeySize is the only accepted key length: AES-256.
const KeySize = 32

// MaxKeyIDLen bounds a key id so that the sealed header stays one byte.
const MaxKeyIDLen = 64

// format of a sealed value:
//
//	version (1 byte, formatV1) | len(id) (1 byte) | id | nonce (12 bytes) | GCM ciphertext+tag
const (
	formatV1  = 0x01
	nonceSize = 12
	tagSize   = 16
)

// DevKeyFile is the file name DevKeyring keeps its key in.
const DevKeyFile = "secret-keys"

var (
	// ErrNoKeys: neither AMTPROV_SECRET_KEYS nor AMTPROV_SECRET_KEYS_FILE is set, or they hold no key.
	ErrNoKeys = errors.New("secrets: no keys configured (set " + EnvKeys + " or " + EnvKeysFile + ")")
	// ErrMalformed: the sealed value is not in this package's format (truncated, wrong version).
	ErrMalformed = errors.New("secrets: malformed sealed value")
	// ErrUnknownKey: the sealed value names a key id the keyring does not hold.
	ErrUnknownKey = errors.New("secrets: sealed with a key not in the keyring")
	// ErrDecrypt: authentication failed: wrong key material, wrong aad (the value was moved
	// between rows or columns) or the ciphertext was altered.
	ErrDecrypt = errors.New("secrets: decryption failed (wrong key, wrong aad or tampered value)")
	// ErrBadKey: a configured key or key id is unusable.
	ErrBadKey = errors.New("secrets: invalid key")
)

// Keyring seals with its active key and opens with any of its keys. It is
// safe for concurrent use.
type Keyring struct {
	active string
	aeads  map[string]cipher.AEAD
}

// NewKeyring builds a keyring from raw 32-byte keys; active must be one of them.
// The key slices are copied by the cipher and may be reused by the caller.
func NewKeyring(active string, keys map[string][]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	k := &Keyring{active: active, aeads: make(map[string]cipher.AEAD, len(keys))}
	for id, key := range keys {
		if err := validID(id); err != nil {
			return nil, err
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("%w: key %q is %d bytes, want %d (AES-256)", ErrBadKey, id, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %v", ErrBadKey, id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %v", ErrBadKey, id, err)
		}
		k.aeads[id] = aead
	}
	if _, ok := k.aeads[active]; !ok {
		return nil, fmt.Errorf("%w: active key %q is not in the keyring", ErrBadKey, active)
	}
	return k, nil
}

func validID(id string) error {
	if id == "" || len(id) > MaxKeyIDLen {
		return fmt.Errorf("%w: key id must be 1..%d characters", ErrBadKey, MaxKeyIDLen)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("%w: key id %q may contain only letters, digits, '-', '_' and '.'", ErrBadKey, id)
		}
	}
	return nil
}

// ActiveKeyID is the id of the key Seal uses; store it next to a sealed column
// (key_id) to find rows that still need re-sealing after a rotation.
func (k *Keyring) ActiveKeyID() string { return k.active }

// Seal encrypts plaintext under the active key with a fresh random nonce. The
// output names the key (see KeyID). aad is authenticated, not stored: pass the
// same aad to Open (use AAD(table, uuid, column)).
func (k *Keyring) Seal(plaintext, aad []byte) ([]byte, error) {
	aead := k.aeads[k.active]
	out := make([]byte, 0, 2+len(k.active)+nonceSize+len(plaintext)+tagSize)
	out = append(out, formatV1, byte(len(k.active)))
	out = append(out, k.active...)
	nonceAt := len(out)
	out = out[:nonceAt+nonceSize]
	if _, err := rand.Read(out[nonceAt:]); err != nil {
		return nil, fmt.Errorf("secrets: read random nonce: %w", err)
	}
	return aead.Seal(out, out[nonceAt:], plaintext, aad), nil
}

// Open decrypts a value made by Seal with any key of the keyring. Errors are
// ErrMalformed, ErrUnknownKey or ErrDecrypt (checked with errors.Is).
func (k *Keyring) Open(sealed, aad []byte) ([]byte, error) {
	id, body, err := split(sealed)
	if err != nil {
		return nil, err
	}
	aead, ok := k.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w: key id %q", ErrUnknownKey, id)
	}
	pt, err := aead.Open(nil, body[:nonceSize], body[nonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("open value sealed with key %q: %w", id, ErrDecrypt)
	}
	return pt, nil
}

// NeedsRotation reports whether sealed was made with a key other than the
// active one (or is unreadable), i.e. whether Reseal would change it.
func (k *Keyring) NeedsRotation(sealed []byte) bool { return KeyID(sealed) != k.active }

// Reseal opens sealed with whichever key made it and seals it again under the
// active key, for rotating stored values.
func (k *Keyring) Reseal(sealed, aad []byte) ([]byte, error) {
	pt, err := k.Open(sealed, aad)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	return k.Seal(pt, aad)
}

// KeyID returns the id of the key that sealed a value, or "" if sealed is not
// in this package's format.
func KeyID(sealed []byte) string {
	id, _, err := split(sealed)
	if err != nil {
		return ""
	}
	return id
}

func split(sealed []byte) (id string, body []byte, err error) {
	if len(sealed) < 2 || sealed[0] != formatV1 {
		return "", nil, ErrMalformed
	}
	n := int(sealed[1])
	if n == 0 || len(sealed) < 2+n+nonceSize+tagSize {
		return "", nil, ErrMalformed
	}
	return string(sealed[2 : 2+n]), sealed[2+n:], nil
}

// AAD builds the additional authenticated data for a secret stored in
// table.column of the row keyed by key (usually the device uuid). Parts are
// length-prefixed, so ("ab","c") and ("a","bc") differ.
func AAD(table, key, column string) []byte {
	out := make([]byte, 0, len(table)+len(key)+len(column)+12)
	for _, p := range []string{table, key, column} {
		out = fmt.Appendf(out, "%d:%s;", len(p), p)
	}
	return out
}

// CredentialAAD is the additional authenticated data of a sealed column of
// device_credentials: bound to the device, the credentials version and the
// column, so a value copied to another device, another version of the same
// device (an older password shown as the current one) or another column
// does not open.
func CredentialAAD(uuid string, version int, column string) []byte {
	return AAD("device_credentials", uuid+"/v"+strconv.Itoa(version), column)
}

// OpenCredential opens a sealed column of device_credentials (see
// CredentialAAD). Values sealed before the version was bound (2026-11-27,
// AAD("device_credentials", uuid, column)) still open, with the weaker
// binding they were sealed with; a value sealed since cannot be moved to
// another version, since it opens only under its own.
func (k *Keyring) OpenCredential(sealed []byte, uuid string, version int, column string) ([]byte, error) {
	pt, err := k.Open(sealed, CredentialAAD(uuid, version, column))
	if errors.Is(err, ErrDecrypt) {
		if legacy, lerr := k.Open(sealed, AAD("device_credentials", uuid, column)); lerr == nil {
			return legacy, nil
		}
	}
	return pt, err
}

// LoadKeyring reads the keyring from AMTPROV_SECRET_KEYS, or if that is empty
// from the file named by AMTPROV_SECRET_KEYS_FILE. The first key listed is
// active. getenv is os.Getenv in main and a map lookup in tests.
func LoadKeyring(getenv func(string) string) (*Keyring, error) {
	spec := getenv(EnvKeys)
	src := EnvKeys
	if strings.TrimSpace(spec) == "" {
		path := getenv(EnvKeysFile)
		if path == "" {
			return nil, ErrNoKeys
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("secrets: read key file named by %s: %w", EnvKeysFile, err)
		}
		spec, src = string(b), path
	}
	k, err := ParseKeys(spec)
	if err != nil {
		return nil, fmt.Errorf("load keys from %s: %w", src, err)
	}
	return k, nil
}

// ParseKeys parses "id1:base64key,id2:base64key" (commas or newlines between
// entries; blank lines and # comments ignored). The first key is active.
// Standard or URL base64, padded or not, is accepted.
func ParseKeys(spec string) (*Keyring, error) {
	keys := map[string][]byte{}
	active := ""
	fields := strings.FieldsFunc(spec, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' })
	for i, f := range fields {
		f = strings.TrimSpace(f)
		if f == "" || strings.HasPrefix(f, "#") {
			continue
		}
		id, b64, ok := strings.Cut(f, ":")
		if !ok {
			return nil, fmt.Errorf("%w: entry %d is not id:base64key", ErrBadKey, i+1)
		}
		id = strings.TrimSpace(id)
		if _, dup := keys[id]; dup {
			return nil, fmt.Errorf("%w: key id %q listed twice", ErrBadKey, id)
		}
		key, err := decodeB64(strings.TrimSpace(b64))
		if err != nil {
			// Never echo the value: it is key material.
			return nil, fmt.Errorf("%w: key %q is not valid base64", ErrBadKey, id)
		}
		keys[id] = key
		if active == "" {
			active = id
		}
	}
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	return NewKeyring(active, keys)
}

func decodeB64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// GenerateKey returns a new random AES-256 key.
func GenerateKey() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("secrets: generate key: %w", err)
	}
	return key, nil
}

// DevKeyring loads the development keyring from dir/secret-keys, creating dir
// and a file with one fresh random key (mode 0600) when there is none. A key
// file readable by group or others is refused. For `amtprov dev` only:
// production keys come from LoadKeyring.
func DevKeyring(dir string) (*Keyring, error) {
	path := filepath.Join(dir, DevKeyFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("secrets: create dev key directory: %w", err)
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	line := "dev-" + randID() + ":" + base64.StdEncoding.EncodeToString(key) + "\n"
	clear(key)
	// Write a temporary file and hard-link it into place: the link fails if
	// the key file exists, so two dev runners starting at once agree on one
	// key, and no reader ever sees a half-written file.
	tmp, err := os.CreateTemp(dir, ".secret-keys-*")
	if err != nil {
		return nil, fmt.Errorf("secrets: create dev key file: %w", err)
	}
	_, werr := tmp.WriteString(line)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return nil, fmt.Errorf("secrets: write dev key file: %w", err)
	}
	lerr := os.Link(tmp.Name(), path)
	_ = os.Remove(tmp.Name())
	if lerr != nil && !errors.Is(lerr, os.ErrExist) {
		return nil, fmt.Errorf("secrets: create dev key file %s: %w", path, lerr)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: stat dev key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: dev key file %s has mode %v; it must not be readable by group or others (chmod 600)", ErrBadKey, path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: read dev key file: %w", err)
	}
	k, err := ParseKeys(string(b))
	if err != nil {
		return nil, fmt.Errorf("dev key file %s: %w", path, err)
	}
	return k, nil
}

func randID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms (Go ≥1.24)
	return fmt.Sprintf("%x", b)
}
