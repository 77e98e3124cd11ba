// Package portal holds the domain vocabulary shared by every part of the
// Rental Portal platform: the error type with its codes and the entities that
// the store reads and writes. It imports nothing of ours.
package portal

import (
	"errors"
	"fmt"
)

// Error codes. Each code maps to one HTTP status in api/errors.go and decides
// in the worker whether a failed task is worth retrying.
const (
	EINVALID       = "invalid"                // 400: malformed or semantically invalid input
	EVALIDATION    = "validation_failed"      // 400: field-level validation failed (Details filled)
	EUNAUTHORIZED  = "unauthorized"           // 401: missing or bad credentials
	EFORBIDDEN     = "forbidden"              // 403: authenticated but not allowed
	ENOTFOUND      = "not_found"              // 404: absent, or not visible to the caller
	ECONFLICT      = "conflict"               // 409: the current state forbids the change
	EOVERLAP       = "booking_overlap"        // 409: dates overlap another booking of the listing
	EDUPLICATE     = "duplicate"              // 409: a unique value is already taken
	ETOOLARGE      = "too_large"              // 413: body or file over its limit
	EUNSUPPORTED   = "unsupported_media_type" // 415: content type not allowed
	EUNPROCESSABLE = "unprocessable"          // 422: well-formed but cannot be processed
	ERATELIMITED   = "rate_limited"           // 429: over a rate limit
	EUNAVAILABLE   = "unavailable"            // 503: a dependency is down; try again
	EINTERNAL      = "internal"               // 500: a bug or an unexpected failure
)

// FieldError describes one invalid input field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the one error type of the platform. Code is machine-readable;
// Message is safe to show to a client; Err, when set, is the underlying cause
// and is never shown to clients.
type Error struct {
	Code    string
	Message string
	Details []FieldError
	Err     error
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted client-safe message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WrapError returns an *Error with the given code and message whose cause is err.
func WrapError(code string, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of the first *Error in err's
// chain, or a generic message for any other error.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ErrorDetails returns the field details of the first *Error in err's chain.
func ErrorDetails(err error) []FieldError {
	var e *Error
	if errors.As(err, &e) {
		return e.Details
	}
	return nil
}

// IsPermanent reports whether an error with this code will fail the same way
// on every retry (bad input, missing rows, forbidden moves), so a task that
// returns it should not be retried.
func IsPermanent(code string) bool {
	switch code {
	case EINVALID, EVALIDATION, EUNAUTHORIZED, EFORBIDDEN, ENOTFOUND, EOVERLAP,
		EDUPLICATE, ETOOLARGE, EUNSUPPORTED, EUNPROCESSABLE:
		return true
	}
	return false
}
