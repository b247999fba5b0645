package wsman

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// findFixtureDir walks up from the package directory to the directory that
// has shared/fixtures/wsman-responses beside it.
func findFixtureDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		cand := filepath.Join(d, "shared", "fixtures", "wsman-responses")
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			return cand
		}
		if filepath.Dir(d) == d {
			tb.Fatalf("shared/fixtures/wsman-responses not found beside any ancestor of %s", dir)
		}
	}
}

// FuzzEnvelope feeds the response parser (network input: PROTOCOL.md §8.2)
// and every typed decoder. Seeds: every recorded fixture plus hostile
// shapes. It must never panic, and every error must be a *Fault or wrap
// ErrMalformedResponse.
func FuzzEnvelope(f *testing.F) {
	dir := findFixtureDir(f)
	n := 0
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".xml" {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil {
			f.Add(b)
			n++
		}
		return nil
	})
	if n == 0 {
		f.Fatalf("no fixture seeds in %s", dir)
	}
	for _, s := range []string{
		"",
		"<",
		`<a:Envelope xmlns:a="http://www.w3.org/2003/05/soap-envelope"><a:Body><a:Fault></a:Fault></a:Body></a:Envelope>`,
		`<a:Envelope xmlns:a="http://www.w3.org/2003/05/soap-envelope"><a:Body><g:X_OUTPUT><g:ReturnValue>-1</g:ReturnValue><g:KeyPair><ReferenceParameters><SelectorSet><Selector Name="InstanceID"><EndpointReference><ReferenceParameters/></EndpointReference></Selector></SelectorSet></ReferenceParameters></g:KeyPair></g:X_OUTPUT></a:Body></a:Envelope>`,
		`<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseResponse(data)
		var fault *Fault
		switch {
		case errors.As(err, &fault):
			if r == nil || r.Body == nil || r.Body.Name.Local != "Fault" {
				t.Fatalf("fault without its response: %+v", r)
			}
			return
		case err != nil:
			if !errors.Is(err, ErrMalformedResponse) {
				t.Fatalf("untyped parse error: %v", err)
			}
			return
		case r == nil:
			t.Fatal("nil response without error")
		}
		b := r.Body
		// Typed decoders and lookups must cope with anything that parses.
		_, _ = decodeGeneralSettings(b)
		_, _ = decodeTLSSetting(b)
		_, _ = decodeRedirection(b)
		_, _ = decodeOptIn(b)
		_, _ = b.EPR()
		for _, k := range b.Children("Items") {
			for _, item := range k.Kids {
				_, _ = item.Child("ElementInContext").EPR()
				_, _ = item.Int("ReturnValue")
				_, _ = item.Bool("Enabled")
			}
		}
		if _, err := PlatformGUIDToUUID(b.String("PlatformGUID")); err != nil && !errors.Is(err, ErrMalformedResponse) {
			t.Fatalf("untyped PlatformGUID error: %v", err)
		}
		if _, err := decodeHTTP(200, data); err != nil && !errors.Is(err, ErrMalformedResponse) {
			t.Fatalf("decodeHTTP disagrees with ParseResponse: %v", err)
		}
	})
}
