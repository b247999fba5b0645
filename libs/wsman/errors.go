package wsman

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. Every error a Client returns wraps one of these or is
// one of the typed errors below, and says what was being done.
var (
	// ErrUnreachable: the device could not be reached in time: dial refused
	// or timed out, or the call's deadline passed before an answer. Safe to
	// retry later; the request may or may not have reached the device when
	// the deadline passed mid-call (check with errors.Is(err,
	// context.DeadlineExceeded)).
	ErrUnreachable = errors.New("device unreachable")
	// ErrConnectionLost: the connection broke after the request was sent
	// (reset, EOF). The device may have acted on the request: read state
	// back before repeating a one-shot call such as CommitChanges.
	ErrConnectionLost = errors.New("connection lost")
	// ErrUnauthorized: the device refused the digest credentials (HTTP 401
	// after authenticating), or asked for credentials the client does not
	// have.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrResponseTooLarge: the response body exceeded Config.MaxResponseBytes.
	ErrResponseTooLarge = errors.New("response too large")
	// ErrRequestTooLarge: the request envelope exceeded MaxRequestBytes.
	ErrRequestTooLarge = errors.New("request too large")
	// ErrMalformedResponse: the response is not a WS-Man envelope this client
	// can read (not XML, wrong SOAP namespace, too deep, missing elements).
	ErrMalformedResponse = errors.New("malformed WS-Man response")
	// ErrInvalidArgument: the caller passed a value the protocol cannot
	// carry (an over-long user name, an empty certificate).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrPinMismatch: the device presented a certificate whose SHA-256 is
	// not the pinned one (see PinnedTLSConfig); it is inside a *TLSError.
	ErrPinMismatch = errors.New("device certificate does not match the pinned SHA-256")
)

// Fault is a SOAP fault answered by the device (PROTOCOL.md §8.2), e.g.
// Code "a:Sender" with Subcode "b:DestinationUnreachable". Codes keep the
// prefix as sent; Subcode's local part is what to switch on (SubcodeLocal).
type Fault struct {
	Code       string
	Subcode    string
	Reason     string
	Detail     string
	HTTPStatus int
}

func (f *Fault) Error() string {
	var b strings.Builder
	b.WriteString("SOAP fault ")
	b.WriteString(f.Code)
	if f.Subcode != "" {
		b.WriteString("/")
		b.WriteString(f.Subcode)
	}
	if f.Reason != "" {
		b.WriteString(": ")
		b.WriteString(f.Reason)
	}
	if f.Detail != "" {
		b.WriteString(" (")
		b.WriteString(f.Detail)
		b.WriteString(")")
	}
	return b.String()
}

// SubcodeLocal is the Subcode without its namespace prefix, e.g.
// "DestinationUnreachable", "InvalidSelectors", "AccessDenied".
func (f *Fault) SubcodeLocal() string {
	if i := strings.LastIndexByte(f.Subcode, ':'); i >= 0 {
		return f.Subcode[i+1:]
	}
	return f.Subcode
}

// ReturnError is a method call that the device answered with a non-zero
// ReturnValue. Name is the status name (PROTOCOL.md §2.4 via StatusName for
// AMT methods; the CIM names for CIM_ methods), "" when unknown.
type ReturnError struct {
	Method      string // Class.Method, e.g. "AMT_SetupAndConfigurationService.CommitChanges"
	ReturnValue int
	Name        string
}

func (e *ReturnError) Error() string {
	s := e.Method + " returned " + strconv.Itoa(e.ReturnValue)
	if e.Name != "" {
		s += " (" + e.Name + ")"
	}
	return s
}

// TLSError is a failed TLS handshake with the device: it refused our
// certificate chain (setup mode: the provisioning certificate was not
// accepted, CERT_REJECTED_BY_DEVICE), or its certificate failed our check
// (a pin mismatch wraps ErrPinMismatch).
type TLSError struct {
	Address string
	Err     error
}

func (e *TLSError) Error() string { return "TLS handshake with " + e.Address + ": " + e.Err.Error() }
func (e *TLSError) Unwrap() error { return e.Err }

// HTTPError is an HTTP status other than 200 that carried no SOAP fault,
// e.g. 503 from a busy device. Retryable reports 5xx.
type HTTPError struct {
	Status int
	Body   string // first bytes of the body, for diagnostics
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("HTTP %d", e.Status)
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Retryable reports whether the status is a server-side (5xx) condition
// worth retrying.
func (e *HTTPError) Retryable() bool { return e.Status >= 500 }

// Retryable reports whether err is a transient transport condition a
// caller may retry with backoff: ErrUnreachable, ErrConnectionLost or a
// 5xx HTTPError. Faults, ReturnErrors, TLS and auth failures are not.
// ErrConnectionLost is only safe to retry for idempotent calls.
func Retryable(err error) bool {
	if errors.Is(err, ErrUnreachable) || errors.Is(err, ErrConnectionLost) {
		return true
	}
	var he *HTTPError
	return errors.As(err, &he) && he.Retryable()
}
