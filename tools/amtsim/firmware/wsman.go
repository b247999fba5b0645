package firmware

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
)

// maxEnumContexts bounds open enumerations per device; the oldest goes first.
const maxEnumContexts = 16

// enumContext is an open enumeration: the instances not yet pulled.
type enumContext struct {
	id    string
	class string
	items []instance
}

// call is one WS-Man request on its way through the dispatcher.
type call struct {
	d   *Device
	req *wsRequest
	now time.Time
	ctx context.Context
	// setupSession is true for the mutually authenticated TLS session of
	// remote configuration (§6.1); false for digest-authenticated calls.
	setupSession bool
	// abort asks the HTTP layer to drop the connection without an answer
	// (the device rebooted mid-call).
	abort bool
}

// classDef describes what firmware does with one class. Handlers run with
// d.mu held; nil handlers answer ActionNotSupported.
type classDef struct {
	uri     string
	list    func(c *call) []instance
	put     func(c *call, target instance) (instance, *wsFault)
	create  func(c *call) (*eprRef, *wsFault)
	del     func(c *call, target instance) *wsFault
	methods map[string]method
}

// method is a class method: its handler and the simulated time it takes.
type method struct {
	run   func(c *call, in *xnode) (response, *wsFault)
	delay func(r Realism) time.Duration
}

// classURI maps a class name to its resource URI (§8.1).
func classURI(class string) string {
	switch {
	case strings.HasPrefix(class, "AMT_"):
		return uriAMT + class
	case strings.HasPrefix(class, "CIM_"):
		return uriCIM + class
	case strings.HasPrefix(class, "IPS_"):
		return uriIPS + class
	}
	return ""
}

// classOf maps a resource URI back to a class name, "" if it is not one.
func classOf(uri string) string {
	for _, base := range []string{uriAMT, uriCIM, uriIPS} {
		if rest, ok := strings.CutPrefix(uri, base); ok && rest != "" && !strings.Contains(rest, "/") {
			if classURI(rest) == uri {
				return rest
			}
		}
	}
	return ""
}

// operation names what a request asks for.
type operation struct {
	kind   string // Get, Put, Create, Delete, Enumerate, Pull, Release, Method
	method string
}

// operationOf reads the Action. Methods are recognised by the last path
// segment: go-wsman v1.8.1 sends RequestStateChange of AMT classes with a
// cim-schema/2 action prefix, which firmware evidently tolerates (RPS uses it).
func operationOf(action string) (operation, bool) {
	switch action {
	case actionGet:
		return operation{kind: "Get"}, true
	case actionPut:
		return operation{kind: "Put"}, true
	case actionCreate:
		return operation{kind: "Create"}, true
	case actionDelete:
		return operation{kind: "Delete"}, true
	case actionEnumerate:
		return operation{kind: "Enumerate"}, true
	case actionPull:
		return operation{kind: "Pull"}, true
	case actionRelease:
		return operation{kind: "Release"}, true
	}
	i := strings.LastIndexByte(action, '/')
	if i < 0 || i == len(action)-1 || !strings.HasPrefix(action, "http") {
		return operation{}, false
	}
	return operation{kind: "Method", method: action[i+1:]}, true
}

// dispatch answers one authorised request. It sleeps for the configured
// method delays (outside the lock) and returns the envelope to send and the
// HTTP status.
func (d *Device) dispatch(c *call) (response, *wsFault) {
	req := c.req
	class := classOf(req.resourceURI)
	def, ok := classFor(class)
	if !ok {
		return response{}, faultDestinationUnreachable()
	}
	op, ok := operationOf(req.action)
	if !ok {
		return response{}, faultActionNotSupported()
	}
	if op.kind == "Method" {
		m, ok := def.methods[op.method]
		if !ok {
			return response{}, faultActionNotSupported()
		}
		in := req.body
		if in != nil && !strings.EqualFold(in.name.Local, op.method+"_INPUT") {
			return response{}, faultSchemaValidation(fmt.Sprintf("body element %s is not %s_INPUT", in.name.Local, op.method))
		}
		if m.delay != nil {
			if !sleepCtx(c, m.delay(d.realism)) {
				return response{}, faultInternal("request cancelled")
			}
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		c.now = time.Now()
		if in == nil {
			in = &xnode{}
		}
		r, f := m.run(c, in)
		return r, f
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	c.now = time.Now()
	switch op.kind {
	case "Get":
		if def.list == nil {
			return response{}, faultActionNotSupported()
		}
		in, f := selectInstance(def.list(c), req.selectors)
		if f != nil {
			return response{}, f
		}
		return getResponse(actionGet, in), nil
	case "Put":
		if def.put == nil || def.list == nil {
			return response{}, faultActionNotSupported()
		}
		if req.body == nil || !strings.EqualFold(req.body.name.Local, class) {
			return response{}, faultSchemaValidation("Put body must be a " + class + " instance")
		}
		sel := req.selectors
		if len(sel) == 0 {
			// Without a header selector, firmware keys the instance by the
			// InstanceID in the body (MeshCentral's Put of AMT_TLSSettingData).
			if id, ok := req.body.value("InstanceID"); ok {
				sel = selectorSet{"InstanceID": id}
			}
		}
		items := def.list(c)
		if len(sel) == 0 && len(items) > 1 {
			return response{}, faultInvalidSelectors()
		}
		target, f := selectInstance(items, sel)
		if f != nil {
			return response{}, f
		}
		out, f := def.put(c, target)
		if f != nil {
			return response{}, f
		}
		return getResponse(actionPut, out), nil
	case "Create":
		if def.create == nil {
			return response{}, faultActionNotSupported()
		}
		if req.body == nil || !strings.EqualFold(req.body.name.Local, class) {
			return response{}, faultSchemaValidation("Create body must be a " + class + " instance")
		}
		ref, f := def.create(c)
		if f != nil {
			return response{}, f
		}
		return createResponse(ref), nil
	case "Delete":
		if def.del == nil || def.list == nil {
			return response{}, faultActionNotSupported()
		}
		target, f := selectInstance(def.list(c), req.selectors)
		if f != nil {
			return response{}, f
		}
		if f := def.del(c, target); f != nil {
			return response{}, f
		}
		return deleteResponse(def.uri), nil
	case "Enumerate":
		if def.list == nil {
			return response{}, faultActionNotSupported()
		}
		id := d.openEnumLocked(class, def.list(c))
		return enumerateResponse(def.uri, id), nil
	case "Pull":
		return d.pullLocked(class, def.uri, req.body)
	case "Release":
		ctx, _ := req.body.value("EnumerationContext")
		if !d.dropEnumLocked(ctx, class) {
			return response{}, faultInvalidEnumerationContext()
		}
		return response{action: actionRelease + "Response", uri: def.uri, g: nsEnumeration}, nil
	}
	return response{}, faultActionNotSupported()
}

// sleepCtx waits for a simulated delay unless the request ends first.
func sleepCtx(c *call, dur time.Duration) bool {
	if dur <= 0 {
		return true
	}
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// selectInstance picks the instance named by the selectors: with none, the
// first (singletons, and go-wsman's selector-less Get); otherwise one whose
// properties equal every selector.
func selectInstance(items []instance, sel selectorSet) (instance, *wsFault) {
	if len(items) == 0 {
		return instance{}, faultInvalidSelectors()
	}
	if len(sel) == 0 {
		return items[0], nil
	}
next:
	for _, in := range items {
		for name, want := range sel {
			got, ok := in.value(name)
			if !ok || got != want {
				continue next
			}
		}
		return in, nil
	}
	return instance{}, faultInvalidSelectors()
}

// value returns a single-valued property, or for a reference property the
// InstanceID/ElementName inside it (TLSCredentialContext selectors).
func (in instance) value(name string) (string, bool) {
	for _, pr := range in.props {
		if pr.name != name {
			continue
		}
		if pr.ref != nil {
			for _, s := range pr.ref.selectors {
				return s.value, true
			}
			return "", false
		}
		if len(pr.vals) == 1 {
			return pr.vals[0], true
		}
	}
	return "", false
}

// openEnumLocked stores a snapshot and names it like firmware does: a
// little-endian counter rendered as a GUID (fixtures: 14000000-0000-...).
func (d *Device) openEnumLocked(class string, items []instance) string {
	d.msgID++
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(d.msgID))
	id := fmt.Sprintf("%02X%02X%02X%02X-0000-0000-0000-000000000000", b[0], b[1], b[2], b[3])
	if len(d.enums) >= maxEnumContexts {
		copy(d.enums, d.enums[1:])
		d.enums = d.enums[:len(d.enums)-1]
	}
	d.enums = append(d.enums, enumContext{id: id, class: class, items: items})
	return id
}

func (d *Device) dropEnumLocked(id, class string) bool {
	for i, e := range d.enums {
		if e.id == id && e.class == class {
			d.enums = append(d.enums[:i], d.enums[i+1:]...)
			return true
		}
	}
	return false
}

// pullLocked hands out up to MaxElements instances of an enumeration.
func (d *Device) pullLocked(class, uri string, body *xnode) (response, *wsFault) {
	if body == nil || body.name.Local != "Pull" {
		return response{}, faultSchemaValidation("Pull body required")
	}
	id, _ := body.value("EnumerationContext")
	max := 1 // WS-Enumeration default
	if s, ok := body.value("MaxElements"); ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return response{}, faultSchemaValidation("MaxElements must be a positive integer")
		}
		max = n
	}
	for i := range d.enums {
		e := &d.enums[i]
		if e.id != id || e.class != class {
			continue
		}
		if len(e.items) <= max {
			items := e.items
			d.enums = append(d.enums[:i], d.enums[i+1:]...)
			return pullResponse(uri, items, ""), nil
		}
		items := e.items[:max]
		e.items = e.items[max:]
		return pullResponse(uri, items, e.id), nil
	}
	return response{}, faultInvalidEnumerationContext()
}

// permittedMEBx reports whether SetMEBxPassword may run: in setup mode, or
// provisioned in admin control mode (RPS sets it after ACM activation, §7.2).
func (c *call) permittedMEBx() bool {
	fw := &c.d.fw
	return fw.state == amt.InProvisioning || (fw.state == amt.PostProvisioning && fw.mode == amt.ControlACM)
}
