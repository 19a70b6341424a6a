package final

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/outbox"
)

// Declarations of an instance count as live while it refreshed them within
// declarationLive; a running bus refreshes its own every declarationRefresh.
const (
	declarationLive    = 2 * time.Minute
	declarationRefresh = 30 * time.Second
)

// reconcileTopology makes the broker's topology follow the subscriptions
// across restarts. The store records what each instance declared
// (outbox.SubscriptionRecorder). At Start the provider removes what some
// instance declared and neither this one nor a live one declares now
// (mq.Reconciler): so a restarted service sheds the topics it dropped, while
// a rolling deploy or a rollback never unbinds a topic that a running
// instance still consumes. The declarations of instances that are gone are
// forgotten once everything they alone declared is removed; until then
// they stay, and the next start tries again.
//
// A bus without subscriptions (a publishing role of a service whose other
// processes consume) leaves the topology and the record alone. Broker
// errors are logged, not fatal; a database error fails Start.
func (b *Bus) reconcileTopology(ctx context.Context, store outbox.Store, cur mq.Subscriptions) error {
	rec, ok := store.(outbox.SubscriptionRecorder)
	if !ok || cur.Empty() {
		return nil
	}
	decls, err := rec.Declarations(ctx, declarationLive)
	if err != nil {
		return fmt.Errorf("final: %w", err)
	}
	var (
		stale    []outbox.Subscription // declared by instances that are gone
		live     []outbox.Subscription // declared by running instances
		gone     []string
		goneSeen = map[string]bool{}
	)
	for _, d := range decls {
		switch {
		case d.Owner == b.owner:
		case d.Live:
			live = append(live, d.Subscription)
		default:
			stale = append(stale, d.Subscription)
			if !goneSeen[d.Owner] {
				goneSeen[d.Owner] = true
				gone = append(gone, d.Owner)
			}
		}
	}
	prev := fromRecord(stale).Without(fromRecord(live))
	left := prev
	if r, ok := b.provider.(mq.Reconciler); ok && !prev.Empty() {
		left, err = r.Reconcile(ctx, prev)
		if err != nil {
			b.log.Warn("final: broker topology not fully reconciled with the subscriptions; retried at the next start", "err", err)
		}
	}
	if err := rec.Declare(ctx, b.owner, toRecord(cur)); err != nil {
		return fmt.Errorf("final: %w", err)
	}
	if left.Empty() && err == nil {
		if err := rec.Forget(ctx, gone); err != nil {
			return fmt.Errorf("final: %w", err)
		}
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

// declarer refreshes this instance's declarations while the bus runs, so
// that other instances starting meanwhile keep what it consumes.
type declarer struct {
	rec   outbox.SubscriptionRecorder
	owner string
	log   *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startDeclarer(rec outbox.SubscriptionRecorder, owner string, log *slog.Logger) *declarer {
	ctx, cancel := context.WithCancel(context.Background())
	d := &declarer{rec: rec, owner: owner, log: log, cancel: cancel}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(declarationRefresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			rctx, cancel := context.WithTimeout(ctx, declarationRefresh)
			if err := d.rec.Refresh(rctx, d.owner); err != nil && ctx.Err() == nil {
				d.log.Warn("final: could not refresh this instance's subscriptions in the database", "err", err)
			}
			cancel()
		}
	}()
	return d
}

// stop ends the refreshes, waits for the goroutine and marks this
// instance's declarations as no longer live. They stay: the next start of
// the service reads them to know what to remove. (An instance that dies
// without stopping counts as live for declarationLive.)
func (d *declarer) stop(ctx context.Context) {
	if d == nil {
		return
	}
	d.cancel()
	d.wg.Wait()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := d.rec.Retire(ctx, d.owner); err != nil {
		d.log.Warn("final: could not mark this instance's subscriptions as stopped; other instances keep them for a while", "err", err)
	}
}
