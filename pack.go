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
	confirmed []bool // by part
}

// settle counts the verdict on part, and returns the row's once it has all
// of them (last).
func (v *packVerdict) settle(part int, err error) (verdict error, last bool) {
	if v.err == nil {
		v.err = err
	}
	v.confirmed[part] = err == nil
	v.left--
	return v.err, v.left == 0
}

// unconfirmed returns the parts the broker did not confirm, when the pack
// is better split than sent whole again (failure.split): when some of its
// messages were confirmed, which would otherwise be sent again, or when
// the first failure concerns a message rather than the broker (a nack, a
// message refused), which would otherwise fail the whole pack again and
// again. A broker that is down or slow to confirm fails every pack alike,
// and those go whole: nil.
func (v *packVerdict) unconfirmed() []int {
	var parts []int
	for i, ok := range v.confirmed {
		if !ok {
			parts = append(parts, i)
		}
	}
	brokerWide := errors.Is(v.err, mq.ErrUnavailable) || errors.Is(v.err, errConfirmTimeout) ||
		errors.Is(v.err, context.Canceled) || errors.Is(v.err, context.DeadlineExceeded)
	if errors.Is(v.err, errHeldBack) || len(parts) == len(v.confirmed) && brokerWide {
		return nil
	}
	return parts
}

// splitPack inserts, committed on its own, a row for each of the messages
// of the pack f.id listed in f.split, available after availableIn; the
// caller then deletes the pack. A failure between the two leaves both, so
// those messages may be sent twice, never lost. The pack is read back from
// the table: the dispatcher keeps no body once it is sent. It reports
// whether it inserted: false with no error when the pack is gone (deleted
// by someone else: nothing is left to do).
func splitPack(ctx context.Context, store outbox.Store, f failure, availableIn time.Duration) (inserted bool, err error) {
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
	if _, err := outbox.InsertAll(ctx, store, nil, rows); err != nil {
		return false, fmt.Errorf("final: split a pack: %w", err)
	}
	return true, nil
}
