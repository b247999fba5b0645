package keypool

import "testing"

func TestPoolRoundRobin(t *testing.T) {
	p := New(2)
	a, err := p.Key()
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Key()
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Key()
	if err != nil {
		t.Fatal(err)
	}
	if a.N.BitLen() != Bits || b.N.BitLen() != Bits {
		t.Fatalf("key sizes %d, %d; want %d", a.N.BitLen(), b.N.BitLen(), Bits)
	}
	if a.Equal(b) {
		t.Fatal("two slots gave the same key")
	}
	if !a.Equal(c) {
		t.Fatal("third call did not wrap to the first slot")
	}
}
