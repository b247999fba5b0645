// Package password generates the per-device admin and MEBx passwords the
// provisioner sets: random from crypto/rand, meeting the firmware policy
// that RPS and MeshCentral enforce (PROTOCOL.md §7.4: 8-32 characters, at
// least one digit, one lower-case, one upper-case letter and one of
// !@#$%^*), with no character that some firmware or tool mishandles
// (quotes, comma, colon, space, backslash, ampersand, angle brackets).
package password

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"strings"
)

// Length of generated passwords (the policy allows 8-32).
const Length = 20

const (
	digits  = "23456789" // no 0/1: operators read these aloud
	lowers  = "abcdefghijkmnpqrstuvwxyz"
	uppers  = "ABCDEFGHJKLMNPQRSTUVWXYZ"
	symbols = "!@#$%^*"
	all     = digits + lowers + uppers + symbols
)

// New returns a fresh password of Length characters that satisfies Valid.
func New() (string, error) {
	b := make([]byte, Length)
	// One of each required class, the rest from all of them, then shuffled.
	for i, set := range []string{digits, lowers, uppers, symbols} {
		c, err := pick(set)
		if err != nil {
			return "", err
		}
		b[i] = c
	}
	for i := 4; i < Length; i++ {
		c, err := pick(all)
		if err != nil {
			return "", err
		}
		b[i] = c
	}
	for i := len(b) - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return "", fmt.Errorf("generate password: %w", err)
		}
		b[i], b[int(j.Int64())] = b[int(j.Int64())], b[i]
	}
	return string(b), nil
}

func pick(set string) (byte, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
	if err != nil {
		return 0, fmt.Errorf("generate password: %w", err)
	}
	return set[n.Int64()], nil
}

// Valid reports whether pw meets the firmware policy (§7.4).
func Valid(pw string) bool {
	if len(pw) < 8 || len(pw) > 32 {
		return false
	}
	var d, l, u, s bool
	for _, r := range pw {
		switch {
		case strings.ContainsRune(digits+"01", r):
			d = true
		case r >= 'a' && r <= 'z':
			l = true
		case r >= 'A' && r <= 'Z':
			u = true
		case strings.ContainsRune(symbols, r):
			s = true
		default:
			return false
		}
	}
	return d && l && u && s
}
