package wsman

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
)

// Namespaces and fixed strings of the WS-Management wire format
// (PROTOCOL.md §8.1, §8.2).
const (
	NSSOAP        = "http://www.w3.org/2003/05/soap-envelope"
	NSAddressing  = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
	NSWSMan       = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
	NSEnumeration = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
	NSTransfer    = "http://schemas.xmlsoap.org/ws/2004/09/transfer"

	// Anonymous is the WS-Addressing anonymous role, the ReplyTo address.
	Anonymous = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"

	URIBaseAMT = "http://intel.com/wbem/wscim/1/amt-schema/1/"
	URIBaseCIM = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
	URIBaseIPS = "http://intel.com/wbem/wscim/1/ips-schema/1/"

	ActionGet       = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
	ActionPut       = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Put"
	ActionCreate    = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
	ActionDelete    = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
	ActionEnumerate = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate"
	ActionPull      = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull"

	// envelopeStart is byte-for-byte the prefix go-wsman-messages and
	// MeshCentral send (§8.1).
	envelopeStart = `<?xml version="1.0" encoding="utf-8"?><Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns="http://www.w3.org/2003/05/soap-envelope">`
	envelopeEnd   = `</Envelope>`
	// operationTimeout is w:OperationTimeout (§8.1: PT60S in both clients).
	operationTimeout = "PT60S"
	// eprAddress is the a:Address of EPRs in request bodies, as
	// go-wsman-messages sends it (credential context Create).
	eprAddress = "/wsman"

	// Pull paging as go-wsman-messages asks (§8.1).
	pullMaxElements   = 999
	pullMaxCharacters = 99999
)

// MaxRequestBytes bounds a request envelope. Firmware refuses bodies over
// 64 KiB (amtsim models the same); the largest legitimate request, a
// certificate blob, is a few KiB.
const MaxRequestBytes = 64 << 10

// ResourceURI maps a class name to its resource URI by prefix: AMT_, CIM_,
// IPS_ (§8.1). Anything else is returned unchanged (a full URI).
func ResourceURI(class string) string {
	switch {
	case strings.HasPrefix(class, "AMT_"):
		return URIBaseAMT + class
	case strings.HasPrefix(class, "CIM_"):
		return URIBaseCIM + class
	case strings.HasPrefix(class, "IPS_"):
		return URIBaseIPS + class
	}
	return class
}

// className is the last path segment of a resource URI (for span names and
// error messages).
func className(uri string) string {
	if i := strings.LastIndexByte(uri, '/'); i >= 0 {
		return uri[i+1:]
	}
	return uri
}

// Selector is one w:Selector: a plain value, or (Ref set) an endpoint
// reference, as AMT_TLSCredentialContext is keyed.
type Selector struct {
	Name  string
	Value string
	Ref   *EPR
}

// EPR is a WS-Addressing endpoint reference to an instance: a resource URI
// and the selectors that name it (§8.1 references, §8.2 EPR outputs).
type EPR struct {
	Address     string
	ResourceURI string
	Selectors   []Selector
}

// Selector returns the value of the named selector ("" if absent).
func (e EPR) Selector(name string) string {
	for _, s := range e.Selectors {
		if s.Name == name {
			return s.Value
		}
	}
	return ""
}

// InstanceRef is an EPR to the instance of class whose InstanceID is id.
func InstanceRef(class, id string) EPR {
	return EPR{ResourceURI: ResourceURI(class), Selectors: []Selector{{Name: "InstanceID", Value: id}}}
}

// Property is one element of a Put/Create body or a method's input:
// Value, or several Values (a repeated element, e.g. TrustedCN), or Ref
// (an EPR). With Values and Ref unset, Value is written even when empty.
type Property struct {
	Name   string
	Value  string
	Values []string
	Ref    *EPR
}

// Prop is a single-valued property.
func Prop(name, value string) Property { return Property{Name: name, Value: value} }

// PropBool is a boolean property written as true/false.
func PropBool(name string, v bool) Property {
	return Property{Name: name, Value: strconv.FormatBool(v)}
}

// PropInt is an integer property.
func PropInt(name string, v int64) Property {
	return Property{Name: name, Value: strconv.FormatInt(v, 10)}
}

// PropList is a repeated property.
func PropList(name string, values ...string) Property { return Property{Name: name, Values: values} }

// PropRef is an EPR property.
func PropRef(name string, ref EPR) Property { return Property{Name: name, Ref: &ref} }

// Request is one WS-Man request before it is numbered. Build it with
// GetRequest, PutRequest, ...; Envelope renders it.
type Request struct {
	Action      string
	ResourceURI string
	Selectors   []Selector
	// body is the inner XML of <Body>, rendered by the constructors.
	body string
	// method is the method name of an invocation ("" otherwise).
	method string
	// err is a problem found while building (an invalid property name).
	err error
}

// Class is the class name of the request's resource URI.
func (r Request) Class() string { return className(r.ResourceURI) }

// Operation is a short name for spans and errors: Get, Put, Create, Delete,
// Enumerate, Pull, or the method name.
func (r Request) Operation() string {
	if r.method != "" {
		return r.method
	}
	return className(r.Action)
}

// GetRequest reads one instance (§8.1: empty body).
func GetRequest(class string, sel ...Selector) Request {
	return Request{Action: ActionGet, ResourceURI: ResourceURI(class), Selectors: sel}
}

// DeleteRequest deletes one instance.
func DeleteRequest(class string, sel ...Selector) Request {
	return Request{Action: ActionDelete, ResourceURI: ResourceURI(class), Selectors: sel}
}

// EnumerateRequest opens an enumeration of class.
func EnumerateRequest(class string) Request {
	return Request{Action: ActionEnumerate, ResourceURI: ResourceURI(class),
		body: `<Enumerate xmlns="` + NSEnumeration + `" />`}
}

// PullRequest pulls the next items of an enumeration.
func PullRequest(class, enumContext string) Request {
	return Request{Action: ActionPull, ResourceURI: ResourceURI(class),
		body: `<Pull xmlns="` + NSEnumeration + `"><EnumerationContext>` + escape(enumContext) +
			`</EnumerationContext><MaxElements>` + strconv.Itoa(pullMaxElements) + `</MaxElements><MaxCharacters>` +
			strconv.Itoa(pullMaxCharacters) + `</MaxCharacters></Pull>`}
}

// PutRequest replaces an instance with props; the body is the class
// element in the class namespace (§8.1), which firmware insists on.
func PutRequest(class string, props []Property, sel ...Selector) Request {
	uri := ResourceURI(class)
	return Request{Action: ActionPut, ResourceURI: uri, Selectors: sel, body: classBody(className(uri), uri, props), err: checkProps(props)}
}

// CreateRequest creates an instance with props.
func CreateRequest(class string, props []Property) Request {
	uri := ResourceURI(class)
	return Request{Action: ActionCreate, ResourceURI: uri, body: classBody(className(uri), uri, props), err: checkProps(props)}
}

// MethodRequest invokes method on class with input parameters in order
// (§8.1: Action <ResourceURI>/<Method>, body <h:Method_INPUT>).
func MethodRequest(class, method string, in []Property, sel ...Selector) Request {
	uri := ResourceURI(class)
	return Request{Action: uri + "/" + method, ResourceURI: uri, Selectors: sel, method: method,
		body: classBody(method+"_INPUT", uri, in), err: checkProps(in)}
}

// checkProps rejects property names that cannot be element names.
func checkProps(props []Property) error {
	for _, p := range props {
		if !validName(p.Name) {
			return fmt.Errorf("build request: property name %q: %w", p.Name, ErrInvalidArgument)
		}
	}
	return nil
}

func classBody(elem, uri string, props []Property) string {
	var b strings.Builder
	b.WriteString(`<h:`)
	b.WriteString(elem)
	b.WriteString(` xmlns:h="`)
	b.WriteString(escape(uri))
	b.WriteString(`">`)
	for _, p := range props {
		writeProperty(&b, p)
	}
	b.WriteString(`</h:`)
	b.WriteString(elem)
	b.WriteString(`>`)
	return b.String()
}

func writeProperty(b *strings.Builder, p Property) {
	open, end := `<h:`+p.Name+`>`, `</h:`+p.Name+`>`
	switch {
	case p.Ref != nil:
		b.WriteString(open)
		writeEPRBody(b, *p.Ref)
		b.WriteString(end)
	case p.Values != nil:
		for _, v := range p.Values {
			b.WriteString(open)
			b.WriteString(escape(v))
			b.WriteString(end)
		}
	default:
		b.WriteString(open)
		b.WriteString(escape(p.Value))
		b.WriteString(end)
	}
}

// writeEPRBody writes the inside of an EPR: a:Address and
// a:ReferenceParameters (§8.1 references).
func writeEPRBody(b *strings.Builder, e EPR) {
	addr := e.Address
	if addr == "" {
		addr = eprAddress
	}
	b.WriteString(`<a:Address>`)
	b.WriteString(escape(addr))
	b.WriteString(`</a:Address><a:ReferenceParameters><w:ResourceURI>`)
	b.WriteString(escape(e.ResourceURI))
	b.WriteString(`</w:ResourceURI>`)
	writeSelectorSet(b, e.Selectors)
	b.WriteString(`</a:ReferenceParameters>`)
}

func writeSelectorSet(b *strings.Builder, sel []Selector) {
	if len(sel) == 0 {
		return
	}
	b.WriteString(`<w:SelectorSet>`)
	for _, s := range sel {
		b.WriteString(`<w:Selector Name="`)
		b.WriteString(escape(s.Name))
		b.WriteString(`">`)
		if s.Ref != nil {
			b.WriteString(`<a:EndpointReference>`)
			writeEPRBody(b, *s.Ref)
			b.WriteString(`</a:EndpointReference>`)
		} else {
			b.WriteString(escape(s.Value))
		}
		b.WriteString(`</w:Selector>`)
	}
	b.WriteString(`</w:SelectorSet>`)
}

// Envelope renders the request with messageID, in the exact layout of
// go-wsman-messages (§8.1): Action, To, ResourceURI, MessageID, ReplyTo,
// OperationTimeout, then the SelectorSet. Names of elements are validated
// (an element name cannot be escaped); values are XML-escaped. It fails
// with ErrRequestTooLarge over MaxRequestBytes.
func (r Request) Envelope(messageID uint64) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	var b strings.Builder
	b.Grow(len(envelopeStart) + 600 + len(r.body))
	b.WriteString(envelopeStart)
	b.WriteString(`<Header><a:Action>`)
	b.WriteString(escape(r.Action))
	b.WriteString(`</a:Action><a:To>/wsman</a:To><w:ResourceURI>`)
	b.WriteString(escape(r.ResourceURI))
	b.WriteString(`</w:ResourceURI><a:MessageID>`)
	b.WriteString(strconv.FormatUint(messageID, 10))
	b.WriteString(`</a:MessageID><a:ReplyTo><a:Address>` + Anonymous + `</a:Address></a:ReplyTo><w:OperationTimeout>` + operationTimeout + `</w:OperationTimeout>`)
	writeSelectorSet(&b, r.Selectors)
	b.WriteString(`</Header><Body>`)
	b.WriteString(r.body)
	b.WriteString(`</Body>`)
	b.WriteString(envelopeEnd)
	if b.Len() > MaxRequestBytes {
		return nil, fmt.Errorf("%s %s: envelope is %d bytes: %w (limit %d)", r.Operation(), r.Class(), b.Len(), ErrRequestTooLarge, MaxRequestBytes)
	}
	return []byte(b.String()), nil
}

func (r Request) validate() error {
	if r.err != nil {
		return r.err
	}
	if r.Action == "" || r.ResourceURI == "" {
		return fmt.Errorf("build request: action and resource URI are required: %w", ErrInvalidArgument)
	}
	if r.method != "" && !validName(r.method) {
		return fmt.Errorf("build request: method name %q: %w", r.method, ErrInvalidArgument)
	}
	if !validName(className(r.ResourceURI)) {
		return fmt.Errorf("build request: class name %q: %w", className(r.ResourceURI), ErrInvalidArgument)
	}
	return nil
}

// validName reports whether s can be an XML element name as used here
// (class, method and property names: ASCII letters, digits, underscore).
func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, c := range []byte(s) {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func escape(s string) string {
	if !strings.ContainsAny(s, `<>&'"`+"\r\n\t") {
		return s
	}
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
