package web_test

import (
	"testing"

	"github.com/rentalportal/portal/internal/testkit"
)

// TestMain deletes the binary the tests built (testkit.Binary) when they end.
func TestMain(m *testing.M) { testkit.Main(m) }
