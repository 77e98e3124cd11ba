package worker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hibiken/asynq"
)

func TestOutcome(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	cases := []struct {
		name              string
		err               error
		retried, maxRetry int
		retry, archived   bool
	}{
		{"success", nil, 0, 3, false, false},
		{"first failure retries", boom, 0, 3, true, false},
		{"last attempt archives", boom, 3, 3, false, true},
		{"no retry budget archives at once", boom, 0, 0, false, true},
		{"skip retry archives", fmt.Errorf("bad payload: %w", asynq.SkipRetry), 0, 25, false, true},
		{"revoke drops", fmt.Errorf("gone: %w", asynq.RevokeTask), 3, 3, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, a := outcome(c.err, c.retried, c.maxRetry)
			if r != c.retry || a != c.archived {
				t.Fatalf("outcome = retry %v archived %v, want %v %v", r, a, c.retry, c.archived)
			}
		})
	}
}
