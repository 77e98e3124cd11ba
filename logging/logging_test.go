package logging

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestContextAttributesReachEveryLine(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	log, closer, err := New(&b, Options{Level: "info", Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	ctx := With(context.Background(), slog.String("request_id", "r1"))
	ctx = With(ctx, slog.String("task_id", "t1"))
	log.InfoContext(ctx, "hello", "k", "v")
	log.DebugContext(ctx, "hidden")
	var line map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(b.String())), &line); err != nil {
		t.Fatalf("one JSON line expected: %q", b.String())
	}
	if line["request_id"] != "r1" || line["task_id"] != "t1" || line["k"] != "v" {
		t.Errorf("line = %v", line)
	}
}

func TestFileOutputAndBadLevel(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "portal.log")
	log, closer, err := New(nil, Options{Level: "warn", Format: "text", File: path})
	if err != nil {
		t.Fatal(err)
	}
	log.Warn("to the file")
	closer.Close()
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), "to the file") {
		t.Fatalf("file: %q %v", b, err)
	}
	if _, _, err := New(nil, Options{Level: "loud"}); err == nil {
		t.Error("bad level accepted")
	}
}
