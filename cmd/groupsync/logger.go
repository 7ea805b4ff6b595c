package main

import (
	"io"
	"log/slog"
	"time"

	"github.com/lmittmann/tint"

	"github.com/groupsync/groupsync/logctx"
)

// newLogger builds the process logger. Format auto picks colored text (tint) for a person at
// a terminal and JSON for everything else (containers, log shippers); json and text force
// one. An unknown level means info: the values were validated before.
func newLogger(w io.Writer, level, format string, isTTY bool) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		lvl = slog.LevelInfo
	}
	var h slog.Handler
	switch {
	case format == "json" || (format != "text" && !isTTY):
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})
	case format == "text":
		h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})
	default:
		h = tint.NewHandler(w, &tint.Options{Level: lvl, TimeFormat: time.TimeOnly})
	}
	// Lines logged with a run's context (connectors, the mirror) carry its run_id and flow.
	return slog.New(logctx.ContextHandler(h))
}
