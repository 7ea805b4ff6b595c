package main

import (
	"io"
	"log/slog"
	"strings"
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
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl, ReplaceAttr: durationSeconds})
	case format == "text":
		h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl, ReplaceAttr: durationSeconds})
	default:
		h = tint.NewHandler(w, &tint.Options{Level: lvl, TimeFormat: time.TimeOnly, ReplaceAttr: durationSeconds})
	}
	// Lines logged with a run's context (connectors, the mirror) carry its run_id and flow.
	return slog.New(logctx.ContextHandler(h))
}

// durationSeconds writes every time.Duration attribute as seconds (a float) under its key
// with an _s suffix: slog's JSON handler would write bare nanoseconds, which log queries
// misread, and one unit for every duration lets them compare lines. Call sites log seconds
// themselves ("duration_s", d.Seconds()); this catches a Duration logged anywhere else.
func durationSeconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindDuration {
		return a
	}
	key := a.Key
	if !strings.HasSuffix(key, "_s") {
		key += "_s"
	}
	return slog.Float64(key, a.Value.Duration().Seconds())
}
