// Package logging builds the platform's structured logger (log/slog): JSON in
// production, readable text in development, optional rotated file output,
// and attributes carried in the context (request ID, task ID) added to every
// line logged with that context.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"gopkg.in/natefinch/lumberjack.v2"
)

// Options choose the logger's shape.
type Options struct {
	Level  string // debug, info, warn, error
	Format string // json or text
	// File, if set, receives the log (rotated at 100 MB, 5 backups, 28 days)
	// instead of w.
	File string
}

// New returns a logger writing to w (or to the rotated file).
func New(w io.Writer, o Options) (*slog.Logger, io.Closer, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.Level)); err != nil {
		return nil, nil, fmt.Errorf("log level %q: %w", o.Level, err)
	}
	var closer io.Closer = nopCloser{}
	if o.File != "" {
		lj := &lumberjack.Logger{Filename: o.File, MaxSize: 100, MaxBackups: 5, MaxAge: 28, Compress: true}
		w, closer = lj, lj
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if strings.EqualFold(o.Format, "json") {
		h = slog.NewJSONHandler(w, hopts)
	} else {
		h = slog.NewTextHandler(w, hopts)
	}
	return slog.New(contextHandler{h}), closer, nil
}

type ctxKey struct{}

// With returns a context whose log lines carry attrs in addition to any it
// already carries.
func With(ctx context.Context, attrs ...slog.Attr) context.Context {
	prev, _ := ctx.Value(ctxKey{}).([]slog.Attr)
	all := make([]slog.Attr, 0, len(prev)+len(attrs))
	all = append(append(all, prev...), attrs...)
	return context.WithValue(ctx, ctxKey{}, all)
}

// Attrs returns the attributes a context carries.
func Attrs(ctx context.Context) []slog.Attr {
	a, _ := ctx.Value(ctxKey{}).([]slog.Attr)
	return a
}

// contextHandler adds the context's attributes to each record.
type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if attrs := Attrs(ctx); len(attrs) > 0 {
		r.AddAttrs(attrs...)
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
