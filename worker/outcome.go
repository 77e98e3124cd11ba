package worker

import (
	"errors"

	"github.com/hibiken/asynq"
)

// outcome says what asynq does with a task after an attempt that returned
// err, the way its processor decides: a revoked task is dropped (neither
// retried nor archived); a task archives when it was on its last attempt
// (retried >= maxRetry: GetRetryCount counts the attempts before this one)
// or asked to skip retries; any other failure is retried.
func outcome(err error, retried, maxRetry int) (willRetry, archived bool) {
	switch {
	case err == nil, errors.Is(err, asynq.RevokeTask):
		return false, false
	case retried >= maxRetry || errors.Is(err, asynq.SkipRetry):
		return false, true
	}
	return true, false
}
