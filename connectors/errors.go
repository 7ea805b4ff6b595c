package connectors

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors the engine branches on with errors.Is. An *Error matches the sentinel of
// its Class, so callers never need to type-assert.
var (
	// ErrRateLimited: the system throttled us; Error.RetryAfter holds the wait it asked for.
	ErrRateLimited = errors.New("rate limited")
	// ErrRetryable: a transient failure (5xx, timeout, connection reset, truncated body).
	ErrRetryable = errors.New("retryable")
	// ErrPermanent: the system refused the request (4xx); retrying will not help.
	ErrPermanent = errors.New("permanent")
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized: the credentials were refused (401/403).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnsupported: the connector cannot do this (see Capabilities).
	ErrUnsupported = errors.New("unsupported")
)

// Error is a failed call to a system. It names the system and operation, carries the HTTP
// status and the API's own error type and message, and never the credentials.
type Error struct {
	System string // configured system name
	Op     string // e.g. "groups.list", "GET /api/v2/group/search/"
	// Class is one of the sentinels above.
	Class  error
	Status int // HTTP status, 0 when no response arrived
	// Type and Message are the API's own error type and message, when it sent them.
	Type    string
	Message string
	// RetryAfter is the wait the server asked for (rate limits), 0 if none.
	RetryAfter time.Duration
	// Err is the underlying cause (transport error, decode error), if any.
	Err error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %s", e.System, e.Op)
	if e.Status != 0 {
		msg += fmt.Sprintf(": HTTP %d", e.Status)
	}
	if e.Class != nil {
		msg += " (" + e.Class.Error() + ")"
	}
	if e.Type != "" {
		msg += ": " + e.Type
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap exposes the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) and friends work on an *Error.
func (e *Error) Is(target error) bool { return e.Class != nil && target == e.Class }

// RetryAfterOf returns the server-requested wait carried by err, if any.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// IsTransient reports whether retrying the same call later may succeed.
func IsTransient(err error) bool {
	return errors.Is(err, ErrRetryable) || errors.Is(err, ErrRateLimited)
}
