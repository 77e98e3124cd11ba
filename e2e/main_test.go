package e2e

import (
	"os"
	"testing"

	"github.com/rentalportal/portal/internal/testkit"
)

// TestMain removes the binary the tests built (testkit.Binary).
func TestMain(m *testing.M) {
	code := m.Run()
	testkit.RemoveBinary()
	os.Exit(code)
}
