package firmware

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// The response shapes below follow the recorded firmware answers in
// shared/fixtures/wsman-responses (PROTOCOL.md §8.2): prefixes a..f fixed,
// g the class (Get/Put/methods), the enumeration namespace (Enumerate/Pull,
// with h the class) or the transfer namespace (Create); header To, RelatesTo,
// Action with a:mustUnderstand, MessageID uuid:00000000-8086-8086-8086-<hex>,
// ResourceURI.

// eprRef is an endpoint reference: a resource URI and selectors, a selector
// possibly holding a nested reference (TLSCredentialContext keys).
type eprRef struct {
	uri       string
	selectors []eprSel
}

type eprSel struct {
	name  string
	value string
	ref   *eprRef
}

// prop is one property of an instance: one or more values, or a reference.
type prop struct {
	name string
	vals []string
	ref  *eprRef
}

// instance is a CIM instance as firmware renders it: properties in the
// order firmware sends them (alphabetical, as in every fixture).
type instance struct {
	class string // e.g. AMT_GeneralSettings
	uri   string // resource URI of the class
	props []prop
}

func p(name string, vals ...string) prop { return prop{name: name, vals: vals} }

func pref(name string, ref *eprRef) prop { return prop{name: name, ref: ref} }

// xmlw accumulates escaped XML.
type xmlw struct{ strings.Builder }

func (w *xmlw) text(s string) {
	// xml.EscapeText never fails on a strings.Builder.
	_ = xml.EscapeText(w, []byte(s))
}

func (w *xmlw) elem(qname, val string) {
	w.WriteString("<" + qname + ">")
	w.text(val)
	w.WriteString("</" + qname + ">")
}

// epr writes an EPR's children (b:Address, b:ReferenceParameters).
func (w *xmlw) epr(r *eprRef) {
	w.elem("b:Address", anonymous)
	w.WriteString("<b:ReferenceParameters>")
	w.elem("c:ResourceURI", r.uri)
	w.WriteString("<c:SelectorSet>")
	for _, s := range r.selectors {
		w.WriteString(`<c:Selector Name="`)
		w.text(s.name)
		w.WriteString(`">`)
		if s.ref != nil {
			w.WriteString("<b:EndpointReference>")
			w.epr(s.ref)
			w.WriteString("</b:EndpointReference>")
		} else {
			w.text(s.value)
		}
		w.WriteString("</c:Selector>")
	}
	w.WriteString("</c:SelectorSet></b:ReferenceParameters>")
}

// props writes properties with the given prefix.
func (w *xmlw) props(prefix string, ps []prop) {
	for _, pr := range ps {
		q := prefix + ":" + pr.name
		if pr.ref != nil {
			w.WriteString("<" + q + ">")
			w.epr(pr.ref)
			w.WriteString("</" + q + ">")
			continue
		}
		for _, v := range pr.vals {
			w.elem(q, v)
		}
	}
}

// instanceXML writes <prefix:Class>props</prefix:Class>.
func (w *xmlw) instance(prefix string, in instance) {
	w.WriteString("<" + prefix + ":" + in.class + ">")
	w.props(prefix, in.props)
	w.WriteString("</" + prefix + ":" + in.class + ">")
}

// response is a rendered answer before it gets its header.
type response struct {
	action string // full Action URI of the response
	uri    string // ResourceURI header
	g, h   string // namespaces bound to g and h ("" = not declared)
	body   string // contents of a:Body
}

// envelope renders a complete response envelope.
func envelope(r response, relatesTo string, msgID uint64) []byte {
	var w xmlw
	w.WriteString(`<?xml version="1.0" encoding="UTF-8"?>`)
	w.WriteString(`<a:Envelope xmlns:a="` + nsSOAP + `" xmlns:b="` + nsAddressing + `" xmlns:c="` + nsWSMan +
		`" xmlns:d="` + nsTrust + `" xmlns:e="` + nsSecext + `" xmlns:f="` + nsCIMBinding + `"`)
	if r.g != "" {
		w.WriteString(` xmlns:g="`)
		w.text(r.g)
		w.WriteString(`"`)
	}
	if r.h != "" {
		w.WriteString(` xmlns:h="`)
		w.text(r.h)
		w.WriteString(`"`)
	}
	w.WriteString(` xmlns:xsi="` + nsXSI + `">`)
	w.WriteString("<a:Header>")
	w.elem("b:To", anonymous)
	w.elem("b:RelatesTo", relatesTo)
	w.WriteString(`<b:Action a:mustUnderstand="true">`)
	w.text(r.action)
	w.WriteString("</b:Action>")
	w.elem("b:MessageID", fmt.Sprintf("uuid:00000000-8086-8086-8086-%012X", msgID))
	w.elem("c:ResourceURI", r.uri)
	w.WriteString("</a:Header><a:Body>")
	w.WriteString(r.body)
	w.WriteString("</a:Body></a:Envelope>")
	return []byte(w.String())
}

// getResponse renders Get (or Put: action PutResponse) of one instance.
func getResponse(action string, in instance) response {
	var w xmlw
	w.instance("g", in)
	return response{action: action + "Response", uri: in.uri, g: in.uri, h: nsCommon, body: w.String()}
}

// methodResponse renders <g:Method_OUTPUT> with extra output properties
// first and ReturnValue last, as the fixtures do.
func methodResponse(uri, method string, rv int, out ...prop) response {
	var w xmlw
	w.WriteString("<g:" + method + "_OUTPUT>")
	w.props("g", out)
	w.elem("g:ReturnValue", fmt.Sprint(rv))
	w.WriteString("</g:" + method + "_OUTPUT>")
	return response{action: uri + "/" + method + "Response", uri: uri, g: uri, body: w.String()}
}

// enumerateResponse renders the EnumerationContext answer.
func enumerateResponse(uri, ctx string) response {
	var w xmlw
	w.WriteString("<g:EnumerateResponse>")
	w.elem("g:EnumerationContext", ctx)
	w.WriteString("</g:EnumerateResponse>")
	return response{action: actionEnumerate + "Response", uri: uri, g: nsEnumeration, body: w.String()}
}

// pullResponse renders items; next is the context when more remain.
func pullResponse(uri string, items []instance, next string) response {
	var w xmlw
	w.WriteString("<g:PullResponse>")
	if next != "" {
		w.elem("g:EnumerationContext", next)
	}
	w.WriteString("<g:Items>")
	for _, in := range items {
		w.instance("h", in)
	}
	w.WriteString("</g:Items>")
	if next == "" {
		w.WriteString("<g:EndOfSequence></g:EndOfSequence>")
	}
	w.WriteString("</g:PullResponse>")
	return response{action: actionPull + "Response", uri: uri, g: nsEnumeration, h: uri, body: w.String()}
}

// createResponse renders ResourceCreated with the new instance's EPR.
func createResponse(ref *eprRef) response {
	var w xmlw
	w.WriteString("<g:ResourceCreated>")
	w.epr(ref)
	w.WriteString("</g:ResourceCreated>")
	return response{action: actionCreate + "Response", uri: ref.uri, g: nsTransfer, body: w.String()}
}

// deleteResponse is the empty-bodied DeleteResponse.
func deleteResponse(uri string) response {
	return response{action: actionDelete + "Response", uri: uri, g: uri}
}

// wsFault is a SOAP fault as AMT sends it (PROTOCOL.md §8.2 sample).
type wsFault struct {
	code    string // "" = a:Sender; a:Receiver; a:VersionMismatch (no subcode)
	subcode string // prefixed as in faultEnvelope: b: addressing, e: wsman, c: enumeration, d: transfer
	reason  string
	detail  string
}

func (f *wsFault) Error() string { return f.subcode + ": " + f.reason }

// Faults firmware answers with.
func faultDestinationUnreachable() *wsFault {
	return &wsFault{subcode: "b:DestinationUnreachable", reason: "No route can be determined to reach the destination role defined by the WSAddressing To."}
}

func faultActionNotSupported() *wsFault {
	return &wsFault{subcode: "b:ActionNotSupported", reason: "The action is not supported by the service."}
}

func faultInvalidSelectors() *wsFault {
	return &wsFault{subcode: "e:InvalidSelectors", reason: "The Selectors for the resource were not valid."}
}

func faultSchemaValidation(detail string) *wsFault {
	return &wsFault{subcode: "e:SchemaValidationError", reason: "The supplied SOAP violates the corresponding XML Schema definition.", detail: detail}
}

func faultAccessDenied() *wsFault {
	return &wsFault{subcode: "e:AccessDenied", reason: "The sender was not authorized to access the resource."}
}

func faultAlreadyExists() *wsFault {
	return &wsFault{subcode: "e:AlreadyExists", reason: "The sender attempted to create a resource which already exists."}
}

func faultInvalidEnumerationContext() *wsFault {
	return &wsFault{subcode: "c:InvalidEnumerationContext", reason: "The supplied enumeration context is invalid."}
}

func faultVersionMismatch() *wsFault {
	return &wsFault{code: "a:VersionMismatch", reason: "The SOAP envelope is not SOAP 1.2 (" + nsSOAP + ")."}
}

func faultInternal(detail string) *wsFault {
	return &wsFault{code: "a:Receiver", subcode: "e:InternalError", reason: "The service cannot comply with the request due to internal processing errors.", detail: detail}
}

// faultEnvelope renders a fault with the prefix set of a real AMT fault
// (GWM pkg/amterror/error_test.go, RPS ciraConfiguration tests): c is the
// enumeration, d the transfer and e the wsman namespace there.
func faultEnvelope(f *wsFault, relatesTo string, msgID uint64) []byte {
	var w xmlw
	w.WriteString(`<?xml version="1.0" encoding="UTF-8"?>`)
	w.WriteString(`<a:Envelope xmlns:g="` + nsCIMBinding + `" xmlns:f="` + nsEventing + `" xmlns:e="` + nsWSMan +
		`" xmlns:d="` + nsTransfer + `" xmlns:c="` + nsEnumeration + `" xmlns:b="` + nsAddressing + `" xmlns:a="` + nsSOAP +
		`" xmlns:h="` + nsTrust + `" xmlns:i="` + nsSecext + `" xmlns:xsi="` + nsXSI + `">`)
	w.WriteString("<a:Header>")
	w.elem("b:To", anonymous)
	w.elem("b:RelatesTo", relatesTo)
	w.WriteString(`<b:Action a:mustUnderstand="true">` + actionFault + `</b:Action>`)
	w.elem("b:MessageID", fmt.Sprintf("uuid:00000000-8086-8086-8086-%012X", msgID))
	w.WriteString("</a:Header><a:Body><a:Fault><a:Code>")
	code := f.code
	if code == "" {
		code = "a:Sender"
	}
	w.elem("a:Value", code)
	if f.subcode != "" {
		w.WriteString("<a:Subcode>")
		w.elem("a:Value", f.subcode)
		w.WriteString("</a:Subcode>")
	}
	w.WriteString(`</a:Code><a:Reason><a:Text xml:lang="en-US">`)
	w.text(f.reason)
	w.WriteString("</a:Text></a:Reason>")
	w.elem("a:Detail", f.detail)
	w.WriteString("</a:Fault></a:Body></a:Envelope>")
	return []byte(w.String())
}
