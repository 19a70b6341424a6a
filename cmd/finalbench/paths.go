package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
)

// paths counts the messages the library reports, at debug level, as
// having left its fast path: those of the rows the dispatch queue had no
// room for and the overflow read back from the table, and those of the
// relay's claims of rows (their fast path gave up on them, or they waited
// past OutboxScanAgoTime; a row claimed again, after a failed publish,
// counts again). A pack (Options.PackMessages) counts its messages. Every other record
// is dropped, as quietLogger's are. A read back costs the database a read,
// a claim a lease or a held claim's lock, so a phase whose share of them
// grows does more work per message. (Accepting debug records costs the
// library a record per row on some of its slower paths, where the others
// discard them: a few hundred nanoseconds against the claim's tens of
// microseconds.)
type paths struct {
	readBack atomic.Int64
	relayed  atomic.Int64
}

func (p *paths) logger() *slog.Logger { return slog.New(p) }

func (p *paths) Enabled(_ context.Context, l slog.Level) bool { return l == slog.LevelDebug }

func (p *paths) Handle(_ context.Context, r slog.Record) error {
	var counter *atomic.Int64
	switch {
	case strings.HasPrefix(r.Message, "final: rows the dispatch queue had no room for read back"):
		counter = &p.readBack
	case strings.HasPrefix(r.Message, "final: relaying unconfirmed rows"):
		counter = &p.relayed
	default:
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "messages" && a.Value.Kind() == slog.KindInt64 {
			counter.Add(a.Value.Int64())
			return false
		}
		return true
	})
	return nil
}

func (p *paths) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *paths) WithGroup(string) slog.Handler      { return p }

// share formats n of total as "n (p %)".
func share(n, total int64) string {
	if total == 0 {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("%d (%.1f %%)", n, 100*float64(n)/float64(total))
}
