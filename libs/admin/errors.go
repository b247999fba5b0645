package admin

import (
	"errors"
	"fmt"
)

// Error codes shared with the HTTP API. Services add their own (e.g.
// POLICY_FQDN_NOT_ALLOWED); codes are stable strings callers may script on.
const (
	CodeBadRequest  = "BAD_REQUEST" // the request is malformed or a field is invalid
	CodeNotFound    = "NOT_FOUND"   // the thing named does not exist
	CodeConflict    = "CONFLICT"    // it exists already or changed meanwhile
	CodeUnavailable = "UNAVAILABLE" // no service answers, or a dependency is down
	CodeTimeout     = "TIMEOUT"     // no reply in time
	CodeInternal    = "INTERNAL"    // a bug or an unexpected failure; see the service's log
)

// Error is a failure as the caller sees it: a stable code and a message for
// a human. Handlers return it (possibly wrapped) for failures the caller
// should see; Call returns it for every failure, including transport ones.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`

	cause error // transport cause on the client side; never serialised
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// Unwrap gives the transport error behind UNAVAILABLE or TIMEOUT, if any.
func (e *Error) Unwrap() error { return e.cause }

// Is matches another *Error with the same code, so callers can write
// errors.Is(err, &admin.Error{Code: admin.CodeNotFound}).
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code && t.Message == ""
}

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of the *Error in err's chain, or "" when there is none.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
