package secrets_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amtprov/amtprov/libs/secrets"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, secrets.KeySize) }

func b64(b byte) string { return base64.StdEncoding.EncodeToString(key(b)) }

func newRing(t *testing.T, active string, keys map[string][]byte) *secrets.Keyring {
	t.Helper()
	k, err := secrets.NewKeyring(active, keys)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := newRing(t, "k1", map[string][]byte{"k1": key(1)})
	aad := secrets.AAD("device_credentials", "939b524b-13d4-1d18-e487-1c697a6b7a2b", "password_enc")
	for _, pt := range [][]byte{nil, []byte("P@ssw0rd!"), bytes.Repeat([]byte("x"), 70000)} {
		sealed, err := k.Seal(pt, aad)
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		if len(pt) > 4 && bytes.Contains(sealed, pt) {
			t.Fatal("sealed value contains the plaintext")
		}
		if got := secrets.KeyID(sealed); got != "k1" {
			t.Fatalf("KeyID = %q, want k1", got)
		}
		got, err := k.Open(sealed, aad)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("Open returned %d bytes, want %d", len(got), len(pt))
		}
	}
}

func TestSealUsesFreshNonce(t *testing.T) {
	k := newRing(t, "k1", map[string][]byte{"k1": key(1)})
	a, _ := k.Seal([]byte("same"), nil)
	b, _ := k.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are identical: nonce reused")
	}
}

func TestOpenRejects(t *testing.T) {
	k := newRing(t, "k1", map[string][]byte{"k1": key(1)})
	aad := secrets.AAD("t", "u1", "c")
	sealed, err := k.Seal([]byte("secret-value"), aad)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	otherKey := newRing(t, "k1", map[string][]byte{"k1": key(2)})
	otherID := newRing(t, "k2", map[string][]byte{"k2": key(1)})

	tests := []struct {
		name   string
		ring   *secrets.Keyring
		sealed []byte
		aad    []byte
		want   error
	}{
		{"other row", k, sealed, secrets.AAD("t", "u2", "c"), secrets.ErrDecrypt},
		{"other column", k, sealed, secrets.AAD("t", "u1", "d"), secrets.ErrDecrypt},
		{"ambiguous split", k, sealed, secrets.AAD("t", "u", "1c"), secrets.ErrDecrypt},
		{"tampered", k, tampered, aad, secrets.ErrDecrypt},
		{"wrong key material", otherKey, sealed, aad, secrets.ErrDecrypt},
		{"unknown key id", otherID, sealed, aad, secrets.ErrUnknownKey},
		{"empty", k, nil, aad, secrets.ErrMalformed},
		{"truncated", k, sealed[:10], aad, secrets.ErrMalformed},
		{"bad version", k, append([]byte{9}, sealed[1:]...), aad, secrets.ErrMalformed},
		{"zero id length", k, append([]byte{1, 0}, sealed[2:]...), aad, secrets.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := tc.ring.Open(tc.sealed, tc.aad)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open error = %v, want %v", err, tc.want)
			}
			if pt != nil {
				t.Fatal("Open returned plaintext with an error")
			}
			if strings.Contains(err.Error(), "secret-value") {
				t.Fatal("error text contains the plaintext")
			}
		})
	}
}

func TestRotation(t *testing.T) {
	old := newRing(t, "2025", map[string][]byte{"2025": key(1)})
	aad := secrets.AAD("pid_pps", "PID1", "pps_enc")
	sealedOld, err := old.Seal([]byte("pps"), aad)
	if err != nil {
		t.Fatal(err)
	}
	// New key first (active), old key still listed so old rows open.
	ring, err := secrets.ParseKeys("2026:" + b64(2) + ",2025:" + b64(1))
	if err != nil {
		t.Fatal(err)
	}
	if ring.ActiveKeyID() != "2026" {
		t.Fatalf("active = %q, want the first listed", ring.ActiveKeyID())
	}
	if !ring.NeedsRotation(sealedOld) {
		t.Fatal("value sealed with the old key does not need rotation")
	}
	if got, err := ring.Open(sealedOld, aad); err != nil || string(got) != "pps" {
		t.Fatalf("open old value: %q, %v", got, err)
	}
	resealed, err := ring.Reseal(sealedOld, aad)
	if err != nil {
		t.Fatal(err)
	}
	if secrets.KeyID(resealed) != "2026" || ring.NeedsRotation(resealed) {
		t.Fatalf("resealed with %q, want 2026", secrets.KeyID(resealed))
	}
	if _, err := old.Open(resealed, aad); !errors.Is(err, secrets.ErrUnknownKey) {
		t.Fatalf("old ring opened a value sealed with the new key: %v", err)
	}
}

func TestLoadKeyring(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys")
	if err := os.WriteFile(file, []byte("# rotated 2026-11\nb:"+b64(2)+"\n\na:"+b64(1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		env        map[string]string
		wantActive string
		wantErr    error
	}{
		{"env", map[string]string{secrets.EnvKeys: "a:" + b64(1) + ", b:" + b64(2)}, "a", nil},
		{"env wins over file", map[string]string{secrets.EnvKeys: "a:" + b64(1), secrets.EnvKeysFile: file}, "a", nil},
		{"file", map[string]string{secrets.EnvKeysFile: file}, "b", nil},
		{"unpadded url base64", map[string]string{secrets.EnvKeys: "u:" + base64.RawURLEncoding.EncodeToString(key(0xfb))}, "u", nil},
		{"nothing set", map[string]string{}, "", secrets.ErrNoKeys},
		{"only separators", map[string]string{secrets.EnvKeys: " , ,"}, "", secrets.ErrNoKeys},
		{"missing file", map[string]string{secrets.EnvKeysFile: filepath.Join(dir, "nope")}, "", os.ErrNotExist},
		{"short key", map[string]string{secrets.EnvKeys: "a:" + base64.StdEncoding.EncodeToString(key(1)[:16])}, "", secrets.ErrBadKey},
		{"not base64", map[string]string{secrets.EnvKeys: "a:!!!notbase64!!!"}, "", secrets.ErrBadKey},
		{"no colon", map[string]string{secrets.EnvKeys: b64(1)}, "", secrets.ErrBadKey},
		{"bad id", map[string]string{secrets.EnvKeys: "a b:" + b64(1)}, "", secrets.ErrBadKey},
		{"duplicate id", map[string]string{secrets.EnvKeys: "a:" + b64(1) + ",a:" + b64(2)}, "", secrets.ErrBadKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := secrets.LoadKeyring(func(name string) string { return tc.env[name] })
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if v := tc.env[secrets.EnvKeys]; v != "" && strings.Contains(err.Error(), strings.TrimPrefix(v, "a:")) {
					t.Fatal("error text contains key material")
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadKeyring: %v", err)
			}
			if k.ActiveKeyID() != tc.wantActive {
				t.Fatalf("active = %q, want %q", k.ActiveKeyID(), tc.wantActive)
			}
		})
	}
}

func TestNewKeyringRejects(t *testing.T) {
	tests := []struct {
		name   string
		active string
		keys   map[string][]byte
		want   error
	}{
		{"no keys", "a", nil, secrets.ErrNoKeys},
		{"active missing", "b", map[string][]byte{"a": key(1)}, secrets.ErrBadKey},
		{"long id", strings.Repeat("x", secrets.MaxKeyIDLen+1), map[string][]byte{strings.Repeat("x", secrets.MaxKeyIDLen+1): key(1)}, secrets.ErrBadKey},
		{"aes-128 key", "a", map[string][]byte{"a": key(1)[:16]}, secrets.ErrBadKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := secrets.NewKeyring(tc.active, tc.keys); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDevKeyring(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := secrets.DevKeyring(dir)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	st, err := os.Stat(filepath.Join(dir, secrets.DevKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	sealed, err := k1.Seal([]byte("kept"), nil)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := secrets.DevKeyring(dir)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if k2.ActiveKeyID() != k1.ActiveKeyID() {
		t.Fatalf("reload changed the key id %q -> %q", k1.ActiveKeyID(), k2.ActiveKeyID())
	}
	if pt, err := k2.Open(sealed, nil); err != nil || string(pt) != "kept" {
		t.Fatalf("reloaded ring cannot open: %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, secrets.DevKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.DevKeyring(dir); !errors.Is(err, secrets.ErrBadKey) {
		t.Fatalf("world-readable key file accepted: %v", err)
	}
}

func TestKeyIDMalformed(t *testing.T) {
	for _, in := range [][]byte{nil, {1}, {2, 1, 'a'}, {1, 5, 'a'}} {
		if id := secrets.KeyID(in); id != "" {
			t.Fatalf("KeyID(%x) = %q, want empty", in, id)
		}
	}
}

func FuzzOpen(f *testing.F) {
	k, err := secrets.NewKeyring("k1", map[string][]byte{"k1": key(1)})
	if err != nil {
		f.Fatal(err)
	}
	s, _ := k.Seal([]byte("seed"), []byte("aad"))
	f.Add(s, []byte("aad"))
	f.Add([]byte{1, 2, 'k', '1'}, []byte{})
	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		pt, err := k.Open(sealed, aad)
		if err == nil {
			// Only a genuine seal opens; check it re-seals and re-opens.
			s2, err := k.Seal(pt, aad)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := k.Open(s2, aad); err != nil {
				t.Fatal(err)
			}
		}
		_ = secrets.KeyID(sealed)
	})
}

func BenchmarkSeal(b *testing.B) {
	k, _ := secrets.NewKeyring("k1", map[string][]byte{"k1": key(1)})
	pt := []byte("Adm1n-P@ssw0rd-32-characters-lo")
	aad := secrets.AAD("device_credentials", "939b524b-13d4-1d18-e487-1c697a6b7a2b", "password_enc")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Seal(pt, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDevKeyringConcurrentStart(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	ids := make(chan string, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			k, err := secrets.DevKeyring(dir)
			if err != nil {
				errs <- err
				return
			}
			ids <- k.ActiveKeyID()
		}()
	}
	first := ""
	for range n {
		select {
		case err := <-errs:
			t.Fatalf("DevKeyring: %v", err)
		case id := <-ids:
			if first == "" {
				first = id
			}
			if id != first {
				t.Fatalf("concurrent starts got different keys %q and %q", first, id)
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("dir holds %d entries (%v), want only the key file", len(entries), err)
	}
}

// OpenCredential opens a value sealed for its (device, version, column)
// and, for rows sealed before the version was bound, the legacy aad; a
// value sealed for one version does not open as another, and a legacy value
// does not open for another device or column.
func TestOpenCredential(t *testing.T) {
	k := newRing(t, "k1", map[string][]byte{"k1": key(1)})
	const u, other = "939b524b-13d4-1d18-e487-1c697a6b7a2b", "4bac9510-04a6-4321-bae2-d45ddf07b684"
	v2, err := k.Seal([]byte("second"), secrets.CredentialAAD(u, 2, "password_enc"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.OpenCredential(v2, u, 2, "password_enc"); err != nil || string(got) != "second" {
		t.Fatalf("own version: %q %v", got, err)
	}
	for _, c := range []struct {
		uuid    string
		version int
		column  string
	}{{u, 1, "password_enc"}, {u, 3, "password_enc"}, {other, 2, "password_enc"}, {u, 2, "mebx_password_enc"}} {
		if _, err := k.OpenCredential(v2, c.uuid, c.version, c.column); !errors.Is(err, secrets.ErrDecrypt) {
			t.Errorf("version-2 value opened as %+v: %v", c, err)
		}
	}
	legacy, err := k.Seal([]byte("old"), secrets.AAD("device_credentials", u, "password_enc"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.OpenCredential(legacy, u, 1, "password_enc"); err != nil || string(got) != "old" {
		t.Fatalf("legacy value: %q %v", got, err)
	}
	for _, c := range [][2]string{{other, "password_enc"}, {u, "mebx_password_enc"}} {
		if _, err := k.OpenCredential(legacy, c[0], 1, c[1]); !errors.Is(err, secrets.ErrDecrypt) {
			t.Errorf("legacy value opened for %v: %v", c, err)
		}
	}
}
