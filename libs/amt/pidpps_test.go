package amt_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/amtprov/amtprov/libs/amt"
)

// Intel's worked example (IRG pidppschecksum.htm, PROTOCOL.md §5).
const (
	irgPID = "0000-037M"
	irgPPS = "NKLD-G5DC-RRNQ-E9YZ-ZIJL-7LFL-VJED-69XJ"
)

func TestPIDPPSWorkedExample(t *testing.T) {
	if err := amt.ValidatePID(irgPID); err != nil {
		t.Fatalf("IRG PID: %v", err)
	}
	if err := amt.ValidatePPS(irgPPS); err != nil {
		t.Fatalf("IRG PPS: %v", err)
	}
	if got := amt.Checksum("0000037"); got != 'M' {
		t.Fatalf("Checksum(0000037) = %c, want M", got)
	}
	if pid, err := amt.NewPID("0000037"); err != nil || pid != "0000037M" {
		t.Fatalf("NewPID = %q, %v", pid, err)
	}
}

func TestPIDPPSRejects(t *testing.T) {
	for _, pid := range []string{"0000-037N", "0000-037", "0000-037MM", "0000-03_M"} {
		if err := amt.ValidatePID(pid); err == nil {
			t.Errorf("PID %q accepted", pid)
		}
	}
	// Every single-character change in a PPS group's check character is caught.
	for g := 0; g < 8; g++ {
		b := []byte(strings.ReplaceAll(irgPPS, "-", ""))
		if b[g*4+3] == 'Z' {
			b[g*4+3] = 'A'
		} else {
			b[g*4+3]++
		}
		err := amt.ValidatePPS(string(b))
		if !errors.Is(err, amt.ErrChecksum) {
			t.Errorf("group %d: err = %v", g+1, err)
		}
		if err != nil && strings.Contains(err.Error(), string(b)) {
			t.Errorf("error message leaks the PPS: %v", err)
		}
	}
	if err := amt.ValidatePPS("short"); err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("bad-length PPS: err = %v (must fail without echoing it)", err)
	}
}
