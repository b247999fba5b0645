package inventory

import (
	"errors"
	"testing"

	"github.com/amtprov/amtprov/libs/amt"
)

// FuzzDecodeCursor: any string from a client either is rejected as a bad
// request or decodes to a canonical UUID that encodes back to a cursor
// decoding to the same UUID.
func FuzzDecodeCursor(f *testing.F) {
	f.Add("")
	f.Add(encodeCursor("4bac9510-04a6-4321-bae2-d45ddf07b684"))
	f.Add(encodeCursor("4BAC9510-04A6-4321-BAE2-D45DDF07B684"))
	f.Add("!!")
	f.Add("NGJhYzk1MTAtMDRhNi00MzIxLWJhZTItZDQ1ZGRmMDdiNjg0=")
	f.Fuzz(func(t *testing.T, c string) {
		id, err := decodeCursor(c)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("decodeCursor(%q): %v is not a bad request", c, err)
			}
			return
		}
		if c == "" {
			if id != "" {
				t.Fatalf("empty cursor gave %q", id)
			}
			return
		}
		u, err := amt.ParseUUID(id)
		if err != nil || u.String() != id {
			t.Fatalf("decodeCursor(%q) = %q, not a canonical uuid", c, id)
		}
		again, err := decodeCursor(encodeCursor(id))
		if err != nil || again != id {
			t.Fatalf("round trip of %q: %q, %v", id, again, err)
		}
	})
}
