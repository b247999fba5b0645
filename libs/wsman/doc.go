// Package wsman is the WS-Management client every amtprov service uses to
// talk to Intel AMT firmware: the provisioner (remote configuration),
// discovery (identifying provisioned devices) and inventory.
//
// A Client talks to one device endpoint (Config.Address, "ip:16993" or
// "ip:16992"). Low level: Do sends any Request built with GetRequest,
// PutRequest, CreateRequest, DeleteRequest, EnumerateRequest/PullRequest or
// MethodRequest; Get, Put, Create, Delete, Enumerate (Pull until
// EndOfSequence) and Invoke (checks ReturnValue) wrap it. High level: typed
// calls return Go structs for the classes a provisioner needs
// (GeneralSettings, SetupAndConfiguration, SetAdminACLEntryEx, ...).
//
// Errors. Everything a Client returns says what was being done (operation,
// class, device address) and can be classified without string matching:
// *Fault (SOAP fault), *ReturnError (non-zero ReturnValue, with the
// PROTOCOL.md §2.4 name from StatusName), *TLSError (handshake refused:
// the device did not take our provisioning chain, or a pin mismatch),
// *HTTPError (non-200 without a fault; 5xx retryable), ErrUnauthorized
// (digest refused), ErrUnreachable (dial failure or deadline),
// ErrConnectionLost (broken after sending: the outcome is unknown),
// ErrResponseTooLarge, ErrMalformedResponse. Retryable reports the
// transient ones. No error, span attribute or log line carries a password,
// a digest response or a key.
//
// Design decisions, and how this differs from go-wsman-messages (GWM):
//
//   - Envelopes are byte-compatible with GWM and MeshCentral in what
//     firmware looks at (PROTOCOL.md §8.1): the same namespace prefix
//     block, header order (Action, To, ResourceURI, MessageID, ReplyTo,
//     OperationTimeout PT60S, SelectorSet), Pull paging 999/99999,
//     <h:Method_INPUT xmlns:h=ResourceURI> bodies and EPRs with a:Address
//     /wsman. Unlike GWM, every value is XML-escaped (GWM pastes selector
//     values and passwords unescaped), element names are validated, Put
//     bodies are always the namespaced class element (GWM v1.8.1 sends
//     un-namespaced TLSSettingData/RedirectionService bodies that strict
//     firmware refuses), and requests are bounded to MaxRequestBytes.
//   - MessageID comes from a per-client atomic counter: one Client may be
//     used from many goroutines (GWM's counter is a plain int in a shared
//     struct, a data race).
//   - Responses are parsed into a small namespace-aware element tree with
//     encoding/xml under limits (size, depth 32, element count), no DTDs,
//     UTF-8 only; lookups go by local name because AMT's prefixes vary and
//     some outputs carry no namespace (fixture getuuid.xml). The SOAP
//     envelope itself must be SOAP 1.2. GWM unmarshals into large
//     per-class structs and silently zero-fills what it does not find;
//     here typed decoders fail with ErrMalformedResponse on a missing
//     required field.
//   - Digest auth (RFC 2617, qop=auth, MD5, PROTOCOL.md §8.3) is our own:
//     the last challenge is answered pre-emptively on kept-alive
//     connections (AMT caches digest sessions), nc counts per nonce as 8
//     hex digits, a stale nonce is answered once more, and a refusal is
//     ErrUnauthorized without echoing credentials. In the setup-mode TLS
//     session no challenge comes and no credentials are needed (§6.3).
//   - Calls on one Client with digest credentials run one at a time: the
//     nonce count must reach the device in order (AMT and amtsim refuse a
//     lower one as a replay) and firmware serves one request at a time
//     anyway. Use one Client per device; parallelism is across devices.
//   - TLS is done by the client's own dialer so a refused handshake is a
//     *TLSError distinct from an unreachable device: an alert, our own
//     refusal of the device certificate, or a hang-up after the device
//     presented its certificate is a *TLSError; a hang-up before it (a port
//     that accepts and resets) is ErrUnreachable. SetupTLSConfig sends the
//     provisioning chain and hands the device certificate to a hook
//     (setup-mode firmware certificates are self-signed, §6.1);
//     PinnedTLSConfig checks the SHA-256 of the certificate installed at
//     provisioning; CaptureTLSConfig (discovery) records an unknown device
//     certificate for trust on first use. HTTP/2 and compression are off;
//     idle connections close after 5 s (before firmware drops them).
//   - One OpenTelemetry client span per call, named "wsman <Op> <Class>",
//     with wsman.action, wsman.resource_class, server.address and
//     server.port; ReturnValue errors and faults are recorded on the span.
//   - Tests: unit tests replay the recorded fixtures in
//     shared/fixtures/wsman-responses (found by walking up from the package
//     directory); the simulator-driven conformance suite and the byte
//     comparison with go-wsman-messages live in the separate module
//     tests/wsmanconformance, so libs never depends on tools/amtsim.
//   - Responses' RelatesTo is not checked against the MessageID: HTTP/1.1
//     without pipelining cannot mix answers up, and recorded fixtures reuse
//     fixed values.
package wsman
