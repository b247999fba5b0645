// Package admin is amtprov's request/reply API over NATS: the administrative
// verbs the CLI calls (subjects amt.v1.admin.<area>.<verb>, areas domain,
// profile, jobs, explain, device, scan) and any other request/reply
// endpoint with the same framing (certauthority's amt.v1.ca.sign).
//
// Wire format: the request body is JSON; the reply is {"result": ...} or
// {"error": {"code": "...", "message": "..."}}, the error shape of the HTTP
// API. Headers carry the W3C trace context (traceparent) and the caller's
// identity (Amtprov-Actor) for the audit log.
//
// Server side, each verb is a go-kit endpoint served by go-kit's NATS
// transport in a queue group ("admin-<service>"), so replicas share the
// requests; one function (encodeError) turns every error into a reply. A
// handler returns an *Error for what the caller should see; any other error
// is logged and answered as INTERNAL without its text, so no internal detail
// (let alone a secret) reaches the caller.
//
// Client side, Call sends one request and returns the decoded result or an
// *Error. The CLI uses only this package and a NATS connection; it never
// opens the database.
package admin
