package firmware

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Namespaces of the WS-Management protocol (PROTOCOL.md §8.1, §8.2).
const (
	nsSOAP        = "http://www.w3.org/2003/05/soap-envelope"
	nsSOAP11      = "http://schemas.xmlsoap.org/soap/envelope/"
	nsAddressing  = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
	nsWSMan       = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
	nsTrust       = "http://schemas.xmlsoap.org/ws/2005/02/trust"
	nsSecext      = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
	nsCIMBinding  = "http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd"
	nsEnumeration = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
	nsTransfer    = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
	nsEventing    = "http://schemas.xmlsoap.org/ws/2004/08/eventing"
	nsXSI         = "http://www.w3.org/2001/XMLSchema-instance"
	nsCommon      = "http://schemas.dmtf.org/wbem/wscim/1/common"

	anonymous = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"

	uriAMT = "http://intel.com/wbem/wscim/1/amt-schema/1/"
	uriCIM = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
	uriIPS = "http://intel.com/wbem/wscim/1/ips-schema/1/"

	actionGet       = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
	actionPut       = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Put"
	actionCreate    = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
	actionDelete    = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
	actionEnumerate = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate"
	actionPull      = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull"
	actionRelease   = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Release"
	actionFault     = "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault"
)

// Limits on a request body. Firmware has a few hundred KiB of RAM for its
// web server; a request larger or deeper than a provisioner ever sends is
// refused before it costs anything.
const (
	maxBodyBytes = 64 << 10 // whole POST body
	maxDepth     = 24       // element nesting (an EPR inside a selector inside a body is 9)
	maxElements  = 4096     // elements in one envelope
	maxTextBytes = 16 << 10 // character data of one element (a 4 KiB certificate in base64 is ~5.5 KiB)
)

// errEnvelope marks a request that is not a well-formed WS-Man envelope;
// the caller answers it with a SOAP fault.
var errEnvelope = errors.New("malformed WS-Man envelope")

// errVersion marks a SOAP 1.1 (or other) envelope; SOAP 1.2 is required.
var errVersion = errors.New("SOAP version mismatch")

// xnode is one element of a parsed envelope.
type xnode struct {
	name xml.Name
	attr []xml.Attr
	text string
	kids []*xnode
}

// child returns the first child with the local name (any namespace, since
// clients disagree on prefixes; see GWM's un-namespaced Put bodies).
func (n *xnode) child(local string) *xnode {
	if n == nil {
		return nil
	}
	for _, k := range n.kids {
		if k.name.Local == local {
			return k
		}
	}
	return nil
}

// childFold is child with a case-insensitive local name (GWM spells
// SetAdminACLEntryEx_INPUT where the schema says SetAdminAclEntryEx_INPUT).
func (n *xnode) childFold(local string) *xnode {
	if n == nil {
		return nil
	}
	for _, k := range n.kids {
		if strings.EqualFold(k.name.Local, local) {
			return k
		}
	}
	return nil
}

// children returns every child with the local name.
func (n *xnode) children(local string) []*xnode {
	if n == nil {
		return nil
	}
	var out []*xnode
	for _, k := range n.kids {
		if k.name.Local == local {
			out = append(out, k)
		}
	}
	return out
}

// value is the trimmed text of the named child and whether it exists.
func (n *xnode) value(local string) (string, bool) {
	c := n.child(local)
	if c == nil {
		return "", false
	}
	return strings.TrimSpace(c.text), true
}

// attrValue is the value of the attribute with the local name.
func (n *xnode) attrValue(local string) string {
	for _, a := range n.attr {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// selectorSet is the selectors of an EPR or a request header, by name.
type selectorSet map[string]string

// wsRequest is a parsed WS-Man request.
type wsRequest struct {
	action      string
	to          string
	resourceURI string
	messageID   string
	selectors   selectorSet
	body        *xnode // first element child of Body, or nil
}

// parseEnvelope reads one SOAP 1.2 WS-Man request. It refuses DTDs (so no
// entity expansion of any kind), deep nesting, too many elements and
// oversized text, and reports every problem as errEnvelope or errVersion.
func parseEnvelope(data []byte) (*wsRequest, error) {
	if len(data) > maxBodyBytes {
		return nil, fmt.Errorf("%w: body is %d bytes, limit %d", errEnvelope, len(data), maxBodyBytes)
	}
	root, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	if root.name.Local != "Envelope" {
		return nil, fmt.Errorf("%w: root element is %q, want Envelope", errEnvelope, root.name.Local)
	}
	if root.name.Space != nsSOAP {
		return nil, fmt.Errorf("%w: envelope namespace %q, want %s", errVersion, root.name.Space, nsSOAP)
	}
	var header, body *xnode
	for _, k := range root.kids {
		if k.name.Space != nsSOAP {
			return nil, fmt.Errorf("%w: unexpected element {%s}%s in Envelope", errEnvelope, k.name.Space, k.name.Local)
		}
		switch k.name.Local {
		case "Header":
			if header != nil || body != nil {
				return nil, fmt.Errorf("%w: Header repeated or after Body", errEnvelope)
			}
			header = k
		case "Body":
			if body != nil {
				return nil, fmt.Errorf("%w: Body repeated", errEnvelope)
			}
			body = k
		default:
			return nil, fmt.Errorf("%w: unexpected element %s in Envelope", errEnvelope, k.name.Local)
		}
	}
	if header == nil || body == nil {
		return nil, fmt.Errorf("%w: Header and Body are both required", errEnvelope)
	}
	req := &wsRequest{selectors: selectorSet{}}
	for _, h := range header.kids {
		v := strings.TrimSpace(h.text)
		switch {
		case h.name.Space == nsAddressing && h.name.Local == "Action":
			req.action = v
		case h.name.Space == nsAddressing && h.name.Local == "To":
			req.to = v
		case h.name.Space == nsAddressing && h.name.Local == "MessageID":
			req.messageID = v
		case h.name.Space == nsWSMan && h.name.Local == "ResourceURI":
			req.resourceURI = v
		case h.name.Space == nsWSMan && h.name.Local == "SelectorSet":
			for name, val := range selectorsOf(h) {
				req.selectors[name] = val
			}
		}
	}
	if req.action == "" {
		return nil, fmt.Errorf("%w: missing wsa:Action header", errEnvelope)
	}
	if req.messageID == "" {
		return nil, fmt.Errorf("%w: missing wsa:MessageID header", errEnvelope)
	}
	if len(req.messageID) > 256 {
		return nil, fmt.Errorf("%w: wsa:MessageID longer than 256 bytes", errEnvelope)
	}
	if len(body.kids) > 0 {
		req.body = body.kids[0]
	}
	return req, nil
}

// selectorsOf reads a w:SelectorSet: plain selectors by value; a selector
// holding an EPR (TLSCredentialContext keys) by the InstanceID or
// ElementName inside it.
func selectorsOf(set *xnode) selectorSet {
	out := selectorSet{}
	for _, s := range set.children("Selector") {
		name := s.attrValue("Name")
		if name == "" {
			continue
		}
		if ref := s.child("EndpointReference"); ref != nil {
			inner := selectorsOf(ref.child("ReferenceParameters").child("SelectorSet"))
			for _, k := range []string{"InstanceID", "ElementName", "Name"} {
				if v, ok := inner[k]; ok {
					out[name] = v
					break
				}
			}
			continue
		}
		out[name] = strings.TrimSpace(s.text)
	}
	return out
}

// eprSelectors reads the selectors of an EPR element (a:Address +
// a:ReferenceParameters/w:SelectorSet).
func eprSelectors(n *xnode) selectorSet {
	return selectorsOf(n.child("ReferenceParameters").child("SelectorSet"))
}

// parseTree builds the element tree with the limits above.
func parseTree(data []byte) (*xnode, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	// Only UTF-8 (and its ASCII subset) is accepted: no charset readers.
	dec.CharsetReader = func(label string, input io.Reader) (io.Reader, error) {
		if strings.EqualFold(label, "utf-8") || strings.EqualFold(label, "us-ascii") {
			return input, nil
		}
		return nil, fmt.Errorf("unsupported charset %q", label)
	}
	var (
		stack []*xnode
		root  *xnode
		count int
	)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errEnvelope, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			count++
			if count > maxElements {
				return nil, fmt.Errorf("%w: more than %d elements", errEnvelope, maxElements)
			}
			if len(stack) >= maxDepth {
				return nil, fmt.Errorf("%w: nesting deeper than %d", errEnvelope, maxDepth)
			}
			n := &xnode{name: t.Name, attr: t.Copy().Attr}
			if len(stack) == 0 {
				if root != nil {
					return nil, fmt.Errorf("%w: more than one root element", errEnvelope)
				}
				root = n
			} else {
				p := stack[len(stack)-1]
				p.kids = append(p.kids, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(t)) > 0 {
					return nil, fmt.Errorf("%w: text outside the root element", errEnvelope)
				}
				continue
			}
			top := stack[len(stack)-1]
			if len(top.text)+len(t) > maxTextBytes {
				return nil, fmt.Errorf("%w: element %s has more than %d bytes of text", errEnvelope, top.name.Local, maxTextBytes)
			}
			top.text += string(t)
		case xml.Directive:
			// <!DOCTYPE ...>: no DTDs, hence no entity definitions at all.
			return nil, fmt.Errorf("%w: DTDs are not accepted", errEnvelope)
		case xml.ProcInst, xml.Comment:
			// The XML declaration and comments are harmless.
		}
	}
	if root == nil {
		return nil, fmt.Errorf("%w: empty document", errEnvelope)
	}
	return root, nil
}
