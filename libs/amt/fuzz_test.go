package amt_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/amtprov/amtprov/libs/amt"
)

// FuzzHello checks that the decoder never panics, that every failure is a
// typed *HelloError with a stable reason, and that whatever decodes
// re-encodes to exactly the same bytes.
func FuzzHello(f *testing.F) {
	good, err := pkiHello(f).MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	v2, err := amt.Hello{InterfaceVersion: amt.InterfacePSK, UUID: amt.UUID{1}, PID: "0000037M"}.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(v2)
	f.Add(good[:30])
	f.Add(append(append([]byte(nil), good...), 0xff))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := amt.DecodeHello(b)
		if err != nil {
			var he *amt.HelloError
			if !errors.As(err, &he) || he.Reason() == "" {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		n, ok, cerr := amt.Complete(b)
		if !ok || cerr != nil || n != len(b) {
			t.Fatalf("decoded but Complete = %d %v %v (len %d)", n, ok, cerr, len(b))
		}
		again, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed bytes:\n in % x\nout % x", b, again)
		}
	})
}
