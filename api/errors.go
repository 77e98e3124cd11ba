package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/rentalportal/portal"
)

// statusOf is the one table from error code to HTTP status.
var statusOf = map[string]int{
	portal.EINVALID:       http.StatusBadRequest,
	portal.EVALIDATION:    http.StatusBadRequest,
	portal.EUNAUTHORIZED:  http.StatusUnauthorized,
	portal.EFORBIDDEN:     http.StatusForbidden,
	portal.ENOTFOUND:      http.StatusNotFound,
	portal.ECONFLICT:      http.StatusConflict,
	portal.EOVERLAP:       http.StatusConflict,
	portal.EDUPLICATE:     http.StatusConflict,
	portal.ETOOLARGE:      http.StatusRequestEntityTooLarge,
	portal.EUNSUPPORTED:   http.StatusUnsupportedMediaType,
	portal.EUNPROCESSABLE: http.StatusUnprocessableEntity,
	portal.ERATELIMITED:   http.StatusTooManyRequests,
	portal.EUNAVAILABLE:   http.StatusServiceUnavailable,
	portal.EINTERNAL:      http.StatusInternalServerError,
	"method_not_allowed":  http.StatusMethodNotAllowed,
}

// ErrorBody is the one error shape of the API.
type ErrorBody struct {
	Error ErrorObject `json:"error"`
}

// ErrorObject is the inside of ErrorBody.
type ErrorObject struct {
	Code      string              `json:"code"`
	Message   string              `json:"message"`
	Details   []portal.FieldError `json:"details,omitempty"`
	RequestID string              `json:"request_id"`
}

// retryAfter is attached to an error (rate limits, unavailability) to set the
// Retry-After header.
type retryAfter struct {
	error
	after time.Duration
}

func (r retryAfter) Unwrap() error { return r.error }

// WithRetryAfter marks err so that its response carries Retry-After.
func WithRetryAfter(err error, after time.Duration) error { return retryAfter{err, after} }

// renderError writes err in the one error shape with the status of its code,
// aborts the chain, and logs what the client is not told: 5xx errors with
// their cause at error level, 4xx at debug.
func renderError(c *gin.Context, err error) {
	code := portal.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	msg := portal.ErrorMessage(err)
	if status >= 500 && code == portal.EINTERNAL {
		msg = "internal error"
	}
	var ra retryAfter
	if errors.As(err, &ra) {
		secs := int(ra.after.Round(time.Second) / time.Second)
		if secs < 1 {
			secs = 1
		}
		c.Header("Retry-After", strconv.Itoa(secs))
	}
	log := loggerOf(c)
	if status >= 500 {
		log.ErrorContext(c.Request.Context(), "request failed", "status", status, "code", code, "err", err)
	} else {
		log.DebugContext(c.Request.Context(), "request refused", "status", status, "code", code, "err", err)
	}
	_ = c.Error(err)
	c.AbortWithStatusJSON(status, ErrorBody{Error: ErrorObject{
		Code:      code,
		Message:   msg,
		Details:   portal.ErrorDetails(err),
		RequestID: requestID(c),
	}})
}

// loggerOf returns the request's logger (with its request ID) or the default.
func loggerOf(c *gin.Context) *slog.Logger {
	if l, ok := c.Get(ctxLogger); ok {
		return l.(*slog.Logger)
	}
	return slog.Default()
}
