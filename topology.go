package final

import (
	"context"
	"fmt"
	"slices"

	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/outbox"
)

// reconcileTopology makes the broker's topology follow the subscriptions
// across restarts. The store keeps what the service declared at its last
// start (outbox.SubscriptionRecorder); the provider removes what cur no
// longer needs (mq.Reconciler) and reports what it could not remove yet;
// the record becomes cur plus that rest, so the next start tries again.
//
// A bus without subscriptions (a publishing role of a service whose other
// processes consume) leaves the service's topology and its record alone.
// Broker errors are logged, not fatal: the old bindings then stay until a
// later start removes them. A database error fails Start.
func (b *Bus) reconcileTopology(ctx context.Context, store outbox.Store, cur mq.Subscriptions) error {
	rec, ok := store.(outbox.SubscriptionRecorder)
	if !ok || cur.Empty() {
		return nil
	}
	rows, err := rec.Subscriptions(ctx)
	if err != nil {
		return fmt.Errorf("final: %w", err)
	}
	prev := fromRecord(rows)
	var left mq.Subscriptions
	if r, ok := b.provider.(mq.Reconciler); ok && !prev.Empty() {
		left, err = r.Reconcile(ctx, prev)
		if err != nil {
			b.log.Warn("final: broker topology not fully reconciled with the subscriptions; retried at the next start", "err", err)
		}
	}
	if err := rec.SetSubscriptions(ctx, append(toRecord(cur), toRecord(left)...)); err != nil {
		return fmt.Errorf("final: %w", err)
	}
	return nil
}

func toRecord(s mq.Subscriptions) []outbox.Subscription {
	var out []outbox.Subscription
	add := func(kind string, topics []string) {
		for _, t := range topics {
			out = append(out, outbox.Subscription{Topic: t, Kind: kind})
		}
	}
	add(outbox.KindCompeting, s.Topics)
	add(outbox.KindBroadcast, s.Broadcast)
	add(outbox.KindOrdered, s.Ordered)
	return out
}

func fromRecord(rows []outbox.Subscription) mq.Subscriptions {
	var s mq.Subscriptions
	for _, r := range rows {
		var list *[]string
		switch r.Kind {
		case outbox.KindCompeting:
			list = &s.Topics
		case outbox.KindBroadcast:
			list = &s.Broadcast
		case outbox.KindOrdered:
			list = &s.Ordered
		default:
			continue // written by a newer version: not ours to remove
		}
		if !slices.Contains(*list, r.Topic) {
			*list = append(*list, r.Topic)
		}
	}
	return s
}
