package final

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/outbox"
)

// A pack is an outbox row that holds several messages (outbox.Pack,
// Options.PackMessages). The dispatcher publishes its messages one by one
// (publishPack); the row then gets one verdict, gathered here, and a pack
// whose messages did not all go is split into rows of their own rather
// than sent whole again.

// packVerdict gathers the verdicts on the messages of one pack: the row is
// confirmed if every message is, and fails with the first error otherwise.
// Only the confirm loop uses it.
type packVerdict struct {
	left      int    // messages without a verdict
	err       error  // the first failure
	refused   bool   // err came from the publish, not from its confirm
	confirmed []bool // by part
}

// settle counts the verdict on part (published: the publish itself went
// through, and err, if any, came from its confirm), and returns the row's
// once it has all of them (last).
func (v *packVerdict) settle(part int, published bool, err error) (verdict error, last bool) {
	if v.err == nil && err != nil {
		v.err, v.refused = err, !published
	}
	v.confirmed[part] = err == nil
	v.left--
	return v.err, v.left == 0
}

// unconfirmed returns the parts the broker did not confirm when the pack
// is better split than sent whole again (failure.split), and nil when it
// is not:
//   - some of its messages were confirmed: split, or they would be sent
//     again;
//   - none was, and the first was refused at its publish for itself (too
//     large, say) rather than because the broker is unreachable: split, or
//     the pack would stop at that message again and again, and the others
//     would never go;
//   - none was, and the broker is unreachable, slow, or nacked them (a lost
//     connection nacks every pending confirm; an unroutable topic is the
//     whole pack's): whole, as every pack of that moment fails alike.
func (v *packVerdict) unconfirmed() []int {
	var parts []int
	for i, ok := range v.confirmed {
		if !ok {
			parts = append(parts, i)
		}
	}
	unreachable := errors.Is(v.err, mq.ErrUnavailable) || errors.Is(v.err, context.Canceled) ||
		errors.Is(v.err, context.DeadlineExceeded)
	switch {
	case v.err == nil:
		return nil
	case len(parts) < len(v.confirmed), v.refused && !unreachable:
		return parts
	}
	return nil
}

// messagesIn counts the messages of recs: a pack's each, one per other row.
func messagesIn(recs []outbox.Record) int {
	n := 0
	for _, rec := range recs {
		n += max(len(rec.Pack), 1)
	}
	return n
}

// splitPack inserts, in one transaction of begin (nil: on their own), a
// row for each of the messages of the pack f.id listed in f.split,
// available after availableIn; the caller then deletes the pack. A failure
// between the two leaves both, so the pack's messages may be sent again,
// never lost. The pack is read back from the table: the dispatcher keeps
// no body once it is sent. It reports whether it inserted: false with no
// error when the pack is gone (deleted by someone else: nothing is left to
// do). Its errors wrap outbox.ErrTransient when the acker may try again:
// the store's say so for the read and the insert, and txError for the
// transaction's begin and commit.
func splitPack(ctx context.Context, store outbox.Store, begin outbox.Beginner, f failure, availableIn time.Duration) (inserted bool, err error) {
	reader, ok := store.(outbox.Reader)
	if !ok {
		return false, fmt.Errorf("final: split a pack: the outbox store %T cannot read rows back (outbox.Reader)", store)
	}
	recs, err := reader.Read(ctx, []int64{f.id})
	if err != nil || len(recs) == 0 {
		return false, err
	}
	pack := recs[0].Pack
	rows := make([]outbox.Row, 0, len(f.split))
	for _, i := range f.split {
		if i >= len(pack) {
			return false, fmt.Errorf("final: split a pack: row %d holds %d messages, not %d or more", f.id, len(pack), i+1)
		}
		rows = append(rows, outbox.Row{Body: pack[i].Body, AvailableIn: availableIn})
	}
	var tx outbox.Tx
	if begin != nil {
		if tx, err = begin.Begin(ctx); err != nil {
			return false, txError("begin", err)
		}
		defer func() {
			if err != nil {
				_ = tx.Rollback(ctx)
			}
		}()
	}
	if _, err = outbox.InsertAll(ctx, store, tx, rows); err != nil {
		return false, fmt.Errorf("final: split a pack: %w", err)
	}
	if tx != nil {
		if err = tx.Commit(ctx); err != nil {
			return false, txError("commit", err)
		}
	}
	return true, nil
}

// txError is the error of a split's transaction that could not begin or
// commit (op), wrapping outbox.ErrTransient when the connection failed or
// the call ran out of time (outbox.ConnectionFailed), which the acker tries
// again (a commit that took effect and lost its answer has its rows
// inserted again: duplicates, not a loss). Anything else (a trigger, a
// read-only database) fails the pack whole, as before the split: trying
// again would hold up the acker's other writes.
func txError(op string, err error) error {
	if outbox.ConnectionFailed(err) {
		return fmt.Errorf("final: split a pack: %s: %w: %w", op, outbox.ErrTransient, err)
	}
	return fmt.Errorf("final: split a pack: %s: %w", op, err)
}
