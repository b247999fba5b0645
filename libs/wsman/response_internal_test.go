package wsman

import (
	"strings"
	"testing"
)

// TestParseTreeTextPerElement: an element's Text is its own character data
// (around its children, not theirs), whitespace kept.
func TestParseTreeTextPerElement(t *testing.T) {
	root, err := parseTree(strings.NewReader(`<a>x<b>y<c> z </c></b>w<d/>v</a>`))
	if err != nil {
		t.Fatal(err)
	}
	b := root.Kids[0]
	got := []string{root.Text, b.Text, b.Kids[0].Text, root.Kids[1].Text}
	want := []string{"xwv", "y", " z ", ""}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("texts %q, want %q", got, want)
		}
	}
}
