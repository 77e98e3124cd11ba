package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The builds of test processes that are gone are deleted; those of live
// ones are not.
func TestRemoveStaleBinaries(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d", binDirPrefix, cmd.Process.Pid))
	live := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d", binDirPrefix, os.Getppid()))
	for _, d := range []string{gone, live} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "rentalportal"), []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.RemoveAll(gone); os.RemoveAll(live) })
	removeStaleBinaries()
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("the build of exited process %d is still there (%v)", cmd.Process.Pid, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the build of live process %d was deleted: %v", os.Getppid(), err)
	}
}
