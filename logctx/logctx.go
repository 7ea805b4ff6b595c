// Package logctx carries a run's log attributes on the context. Connectors log with the
// context of the call (slog's ...Context methods) but with a logger built once per system,
// so their lines cannot name the run that made the call. WithLogAttrs puts the run's
// attributes (run_id, flow) on the context and ContextHandler adds them to every record
// logged with that context, so a connector's line carries its run without the connector
// knowing about runs.
package logctx

import (
	"context"
	"log/slog"
)

type logAttrsKey struct{}

// WithLogAttrs returns ctx carrying args (slog key-value pairs or slog.Attr) in addition to
// those ctx already carries.
func WithLogAttrs(ctx context.Context, args ...any) context.Context {
	prev, _ := ctx.Value(logAttrsKey{}).([]slog.Attr)
	r := slog.Record{}
	r.Add(args...)
	attrs := make([]slog.Attr, 0, len(prev)+r.NumAttrs())
	attrs = append(attrs, prev...)
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a)
		return true
	})
	return context.WithValue(ctx, logAttrsKey{}, attrs)
}

// ContextHandler wraps h so records logged with a context from WithLogAttrs carry its
// attributes. Attributes the logger already has (logger.With) are kept; a key present in
// both appears twice, so callers should not set run_id both ways.
func ContextHandler(h slog.Handler) slog.Handler { return contextHandler{h} }

type contextHandler struct{ h slog.Handler }

func (c contextHandler) Enabled(ctx context.Context, l slog.Level) bool { return c.h.Enabled(ctx, l) }

func (c contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if attrs, ok := ctx.Value(logAttrsKey{}).([]slog.Attr); ok && len(attrs) > 0 {
		r = r.Clone()
		r.AddAttrs(attrs...)
	}
	return c.h.Handle(ctx, r)
}

func (c contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{c.h.WithAttrs(attrs)}
}

func (c contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{c.h.WithGroup(name)}
}

// Attrs returns the attributes ctx carries (nil if none), for callers that group what they
// log by run.
func Attrs(ctx context.Context) []slog.Attr {
	attrs, _ := ctx.Value(logAttrsKey{}).([]slog.Attr)
	return append([]slog.Attr(nil), attrs...)
}
