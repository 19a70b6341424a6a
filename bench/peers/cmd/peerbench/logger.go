package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
)

// peerLogger is the peers' logger: warnings and errors on stderr, less
// the context-cancelled errors that Watermill's subscribers log when a
// phase closes them.
func peerLogger() *slog.Logger {
	return slog.New(closingFilter{slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})})
}

type closingFilter struct{ slog.Handler }

func (h closingFilter) Handle(ctx context.Context, r slog.Record) error {
	cancelled := false
	r.Attrs(func(a slog.Attr) bool {
		if strings.HasSuffix(a.Value.String(), context.Canceled.Error()) {
			cancelled = true
			return false
		}
		return true
	})
	if cancelled {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h closingFilter) WithAttrs(as []slog.Attr) slog.Handler {
	return closingFilter{h.Handler.WithAttrs(as)}
}

func (h closingFilter) WithGroup(name string) slog.Handler {
	return closingFilter{h.Handler.WithGroup(name)}
}
