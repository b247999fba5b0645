package wsman

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits of the response parser. A real response is a few KiB and at most
// ~10 levels deep (an EPR inside a selector inside a Create response); the
// limits leave room for large enumerations while bounding what a hostile
// peer can make us allocate.
const (
	maxDepth    = 32
	maxElements = 1 << 17
	maxAttrs    = 32
)

// Node is one element of a parsed response. Lookups go by local name: AMT
// uses prefixes a..h that vary by response, and some recorded responses put
// output parameters in no namespace (fixture setupandconfiguration/getuuid.xml).
type Node struct {
	Name  xml.Name
	Attrs []xml.Attr
	Text  string
	Kids  []*Node
}

// Child is the first child element with the local name, or nil.
func (n *Node) Child(local string) *Node {
	if n == nil {
		return nil
	}
	for _, k := range n.Kids {
		if k.Name.Local == local {
			return k
		}
	}
	return nil
}

// Children are the child elements with the local name.
func (n *Node) Children(local string) []*Node {
	if n == nil {
		return nil
	}
	var out []*Node
	for _, k := range n.Kids {
		if k.Name.Local == local {
			out = append(out, k)
		}
	}
	return out
}

// Value is the trimmed text of the named child, and whether it exists.
func (n *Node) Value(local string) (string, bool) {
	c := n.Child(local)
	if c == nil {
		return "", false
	}
	return strings.TrimSpace(c.Text), true
}

// String is the trimmed text of the named child ("" if absent).
func (n *Node) String(local string) string {
	v, _ := n.Value(local)
	return v
}

// Values are the trimmed texts of every child with the local name.
func (n *Node) Values(local string) []string {
	var out []string
	for _, c := range n.Children(local) {
		out = append(out, strings.TrimSpace(c.Text))
	}
	return out
}

// Attr is the value of the attribute with the local name ("" if absent).
func (n *Node) Attr(local string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attrs {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// Int reads the named child as a decimal integer. A missing child is an
// error naming it, so typed decoders fail clearly on truncated instances.
func (n *Node) Int(local string) (int64, error) {
	v, ok := n.Value(local)
	if !ok {
		return 0, fmt.Errorf("%w: %s has no %s", ErrMalformedResponse, n.localName(), local)
	}
	i, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s.%s = %q is not an integer", ErrMalformedResponse, n.localName(), local, truncate(v, 40))
	}
	return i, nil
}

// Bool reads the named child as xs:boolean (true/false/1/0); missing is
// false.
func (n *Node) Bool(local string) (bool, error) {
	v, ok := n.Value(local)
	if !ok {
		return false, nil
	}
	switch strings.ToLower(v) {
	case "true", "1":
		return true, nil
	case "false", "0", "":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s.%s = %q is not a boolean", ErrMalformedResponse, n.localName(), local, truncate(v, 40))
}

func (n *Node) localName() string {
	if n == nil {
		return "(nil)"
	}
	return n.Name.Local
}

// EPR reads an endpoint reference element (b:Address +
// b:ReferenceParameters/c:ResourceURI + c:SelectorSet), with selectors that
// hold nested EPRs (AMT_TLSCredentialContext, §8.2).
func (n *Node) EPR() (EPR, error) {
	return n.epr(0)
}

func (n *Node) epr(depth int) (EPR, error) {
	if n == nil {
		return EPR{}, fmt.Errorf("%w: missing endpoint reference", ErrMalformedResponse)
	}
	if depth > 4 {
		return EPR{}, fmt.Errorf("%w: endpoint references nested too deep", ErrMalformedResponse)
	}
	rp := n.Child("ReferenceParameters")
	if rp == nil {
		return EPR{}, fmt.Errorf("%w: %s has no ReferenceParameters", ErrMalformedResponse, n.Name.Local)
	}
	e := EPR{Address: n.String("Address"), ResourceURI: rp.String("ResourceURI")}
	for _, s := range rp.Child("SelectorSet").Children("Selector") {
		sel := Selector{Name: s.Attr("Name")}
		if ref := s.Child("EndpointReference"); ref != nil {
			inner, err := ref.epr(depth + 1)
			if err != nil {
				return EPR{}, err
			}
			sel.Ref = &inner
		} else {
			sel.Value = strings.TrimSpace(s.Text)
		}
		e.Selectors = append(e.Selectors, sel)
	}
	return e, nil
}

// Response is a parsed WS-Man response envelope.
type Response struct {
	Action      string
	RelatesTo   string
	MessageID   string
	ResourceURI string
	// Body is the first element inside the SOAP Body (nil for an empty
	// body, e.g. a Delete response).
	Body *Node
}

// ParseResponse reads a response envelope (§8.2). It accepts only SOAP 1.2
// envelopes, refuses DTDs (so no entities of any kind are expanded),
// charsets other than UTF-8, nesting deeper than 32 and more than 131072
// elements. A SOAP fault is returned as *Fault. Other problems wrap
// ErrMalformedResponse.
func ParseResponse(data []byte) (*Response, error) {
	root, err := parseTree(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if root.Name.Local != "Envelope" || root.Name.Space != NSSOAP {
		return nil, fmt.Errorf("%w: root element {%s}%s, want {%s}Envelope", ErrMalformedResponse,
			truncate(root.Name.Space, 80), truncate(root.Name.Local, 40), NSSOAP)
	}
	var header, body *Node
	for _, k := range root.Kids {
		if k.Name.Space != NSSOAP {
			continue
		}
		switch k.Name.Local {
		case "Header":
			if header == nil {
				header = k
			}
		case "Body":
			if body != nil {
				return nil, fmt.Errorf("%w: more than one Body", ErrMalformedResponse)
			}
			body = k
		}
	}
	if body == nil {
		return nil, fmt.Errorf("%w: envelope has no SOAP 1.2 Body", ErrMalformedResponse)
	}
	r := &Response{}
	var headers []*Node
	if header != nil {
		headers = header.Kids
	}
	for _, h := range headers {
		v := strings.TrimSpace(h.Text)
		switch {
		case h.Name.Space == NSAddressing && h.Name.Local == "Action":
			r.Action = v
		case h.Name.Space == NSAddressing && h.Name.Local == "RelatesTo":
			r.RelatesTo = v
		case h.Name.Space == NSAddressing && h.Name.Local == "MessageID":
			r.MessageID = v
		case h.Name.Space == NSWSMan && h.Name.Local == "ResourceURI":
			r.ResourceURI = v
		}
	}
	if len(body.Kids) > 0 {
		r.Body = body.Kids[0]
	}
	if r.Body != nil && r.Body.Name.Local == "Fault" && r.Body.Name.Space == NSSOAP {
		return r, parseFault(r.Body)
	}
	return r, nil
}

// parseFault reads a SOAP 1.2 fault (§8.2 fault sample).
func parseFault(n *Node) *Fault {
	f := &Fault{
		Code:    n.Child("Code").String("Value"),
		Subcode: n.Child("Code").Child("Subcode").String("Value"),
		Reason:  truncate(n.Child("Reason").String("Text"), 512),
	}
	if d := n.Child("Detail"); d != nil {
		f.Detail = truncate(detailText(d), 512)
	}
	return f
}

// detailText flattens a fault Detail: AMT puts e.g. <c:FaultDetail>URI</c:FaultDetail> there.
func detailText(n *Node) string {
	var parts []string
	if t := strings.TrimSpace(n.Text); t != "" {
		parts = append(parts, t)
	}
	for _, k := range n.Kids {
		if t := detailText(k); t != "" {
			parts = append(parts, t)
		}
	}
	return strings.Join(parts, " ")
}

// parseTree builds the element tree under the limits above.
func parseTree(r io.Reader) (*Node, error) {
	dec := xml.NewDecoder(r)
	dec.Strict = true
	dec.CharsetReader = func(label string, input io.Reader) (io.Reader, error) {
		if strings.EqualFold(label, "utf-8") || strings.EqualFold(label, "us-ascii") {
			return input, nil
		}
		return nil, fmt.Errorf("unsupported charset %q", truncate(label, 40))
	}
	var (
		stack []*Node
		root  *Node
		count int
		// The text of the open elements, innermost last: starts[i] is
		// where element i's text begins in text. A child's text is cut
		// off when it ends, so what is left after starts[i] is element
		// i's own text (one buffer instead of a builder per element).
		text   []byte
		starts []int
	)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformedResponse, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			count++
			if count > maxElements {
				return nil, fmt.Errorf("%w: more than %d elements", ErrMalformedResponse, maxElements)
			}
			if len(stack) >= maxDepth {
				return nil, fmt.Errorf("%w: nesting deeper than %d", ErrMalformedResponse, maxDepth)
			}
			if len(t.Attr) > maxAttrs {
				return nil, fmt.Errorf("%w: element with more than %d attributes", ErrMalformedResponse, maxAttrs)
			}
			n := &Node{Name: t.Name, Attrs: t.Copy().Attr}
			if len(stack) == 0 {
				if root != nil {
					return nil, fmt.Errorf("%w: more than one root element", ErrMalformedResponse)
				}
				root = n
			} else {
				p := stack[len(stack)-1]
				p.Kids = append(p.Kids, n)
			}
			stack = append(stack, n)
			starts = append(starts, len(text))
		case xml.EndElement:
			top, start := stack[len(stack)-1], starts[len(starts)-1]
			top.Text = string(text[start:])
			stack, starts, text = stack[:len(stack)-1], starts[:len(starts)-1], text[:start]
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(t)) > 0 {
					return nil, fmt.Errorf("%w: text outside the root element", ErrMalformedResponse)
				}
				continue
			}
			text = append(text, t...)
		case xml.Directive:
			return nil, fmt.Errorf("%w: DTDs and other directives are not accepted", ErrMalformedResponse)
		case xml.ProcInst, xml.Comment:
		}
	}
	if root == nil {
		return nil, fmt.Errorf("%w: empty document", ErrMalformedResponse)
	}
	return root, nil
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
