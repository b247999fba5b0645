package password

import "testing"

func TestNewMeetsPolicyAndDiffers(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		pw, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if !Valid(pw) || len(pw) != Length {
			t.Fatalf("generated %d-character password fails the policy", len(pw))
		}
		if seen[pw] {
			t.Fatal("the same password twice")
		}
		seen[pw] = true
	}
}

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		pw   string
		want bool
	}{
		{"Aa1!aaaa", true},
		{"Aa1!aaa", false},                           // too short
		{"Aa1!aaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false}, // 33
		{"aa1!aaaa", false},                          // no upper
		{"AA1!AAAA", false},                          // no lower
		{"Aaa!aaaa", false},                          // no digit
		{"Aa1aaaaa", false},                          // no symbol
		{"Aa1!aa:a", false},                          // colon breaks digest
		{"Aa1!aa a", false},
	} {
		if got := Valid(tc.pw); got != tc.want {
			t.Errorf("Valid(%q) = %v", tc.pw, got)
		}
	}
}
