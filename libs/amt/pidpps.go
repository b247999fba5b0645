package amt

import (
	"errors"
	"fmt"
	"strings"
)

// PID and PPS lengths without dashes (PROTOCOL.md §5).
const (
	PIDLength = 8
	PPSLength = 32
)

// ErrChecksum is returned when a PID or PPS group fails its check character.
var ErrChecksum = errors.New("checksum mismatch")

// Checksum computes Intel's PID/PPS check character for the given
// characters: (sum of ASCII codes) mod 36 mapped to 0-9A-Z (IRG
// pidppschecksum.htm, PROTOCOL.md §5).
func Checksum(s string) byte {
	sum := 0
	for i := 0; i < len(s); i++ {
		sum += int(s[i])
	}
	v := byte(sum % 0x24)
	if v <= 9 {
		return '0' + v
	}
	return 'A' + v - 10
}

func normalizeKey(s string, want int, what string) (string, error) {
	k := strings.ToUpper(strings.ReplaceAll(s, "-", ""))
	if len(k) != want {
		return "", fmt.Errorf("%s %q: %d characters without dashes, want %d", what, s, len(k), want)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "", fmt.Errorf("%s %q: character %q outside A-Z0-9", what, s, c)
		}
	}
	return k, nil
}

// ValidatePID checks an 8-character PID (dashes allowed): alphabet and the
// last character as checksum of the first seven.
func ValidatePID(pid string) error {
	k, err := normalizeKey(pid, PIDLength, "PID")
	if err != nil {
		return err
	}
	if c := Checksum(k[:7]); k[7] != c {
		return fmt.Errorf("PID %q: %w (check character %q, want %q)", pid, ErrChecksum, k[7], c)
	}
	return nil
}

// ValidatePPS checks a 32-character PPS (dashes allowed): the 4th character
// of each group of four is the checksum of the group's first three.
func ValidatePPS(pps string) error {
	k, err := normalizeKey(pps, PPSLength, "PPS")
	if err != nil {
		// The value is a secret: never echo it.
		return errors.New("PPS: want 32 characters A-Z0-9 (dashes allowed)")
	}
	for g := 0; g < PPSLength; g += 4 {
		if k[g+3] != Checksum(k[g:g+3]) {
			return fmt.Errorf("PPS group %d: %w", g/4+1, ErrChecksum)
		}
	}
	return nil
}

// NewPID completes a 7-character PID stem with its check character.
func NewPID(stem string) (string, error) {
	k, err := normalizeKey(stem, PIDLength-1, "PID stem")
	if err != nil {
		return "", err
	}
	return k + string(Checksum(k)), nil
}
