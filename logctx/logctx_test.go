package logctx_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/groupsync/groupsync/logctx"
)

func TestContextHandlerAddsRunAttrs(t *testing.T) {
	var out bytes.Buffer
	logger := slog.New(logctx.ContextHandler(slog.NewTextHandler(&out, nil))).With("system", "devrev")
	ctx := logctx.WithLogAttrs(context.Background(), "flow", "people")
	ctx = logctx.WithLogAttrs(ctx, slog.Int64("run_id", 42))

	logger.InfoContext(ctx, "page read", "items", 50)
	logger.Info("no context")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines = %q", lines)
	}
	if !strings.Contains(lines[0], "system=devrev items=50 flow=people run_id=42") {
		t.Errorf("with context: %s", lines[0])
	}
	if strings.Contains(lines[1], "run_id") {
		t.Errorf("without context: %s", lines[1])
	}
}
