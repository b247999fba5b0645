package bus

import (
	"errors"
	"fmt"
	"time"
)

// ErrTerminal marks a handler error that retrying cannot fix: the message
// is terminated (Term) and not redelivered. Wrap it:
// fmt.Errorf("profile %s: %w", name, bus.ErrTerminal).
var ErrTerminal = errors.New("terminal")

// RetryAfterError asks for redelivery after a specific delay, e.g. when the
// handler knows when a lease or a rate limit frees up.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("retry after %s", e.After)
	}
	return fmt.Sprintf("retry after %s: %v", e.After, e.Err)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }
