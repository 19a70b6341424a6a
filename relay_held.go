package final

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/finalbus/final/outbox"
)

// heldBatch is a batch of the relay claimed by a held claim
// (outbox.Holder): its rows stay locked by the claim's transaction until
// every one has its verdict; then that transaction records the failures,
// deletes the confirmed rows and commits. Rows not sent (held back behind
// their key, past their window, or left when the relay stopped) get no
// write: they are available again when the claim ends.
type heldBatch struct {
	claim outbox.Held

	mu       sync.Mutex
	pending  int // rows without a verdict yet
	done     []int64
	failures []failure
	settled  chan struct{} // closed when pending reaches 0
}

func newHeldBatch(claim outbox.Held, rows int) *heldBatch {
	b := &heldBatch{claim: claim, pending: rows, settled: make(chan struct{})}
	if rows == 0 {
		close(b.settled)
	}
	return b
}

// confirmed is the verdict on a row the broker confirmed.
func (b *heldBatch) confirmed(id int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = append(b.done, id)
	b.settle()
}

// failed is the verdict on a row that was not confirmed; errHeldBack marks
// one that was not sent.
func (b *heldBatch) failed(f failure) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = append(b.failures, f)
	b.settle()
}

// settle counts a verdict; b.mu is held.
func (b *heldBatch) settle() {
	if b.pending--; b.pending == 0 {
		close(b.settled)
	}
}

// splitPacks splits the packs of b whose verdict says so (failure.split):
// it inserts a row for each of their unconfirmed messages (splitPack), and
// the claim then deletes the pack with its confirmed rows. A pack it could
// not split is failed whole, as before. b is settled: nothing else uses it.
func (b *heldBatch) splitPacks(ctx context.Context, store outbox.Store, begin outbox.Beginner, availableIn time.Duration) {
	rest := b.failures[:0]
	for _, f := range b.failures {
		if f.split != nil {
			inserted, err := splitPack(ctx, store, begin, f, availableIn)
			if inserted {
				b.done = append(b.done, f.id)
			}
			if err == nil {
				continue
			}
			f.split = nil
		}
		rest = append(rest, f)
	}
	b.failures = rest
}

// finish ends b once every row has its verdict, in a goroutine of the
// relay's (fwg), and then frees its slot. Claims end in the order they
// settle, not the order they were taken: a later claim holds no row of a
// key an earlier one holds, and each must end before the database's idle
// bound.
func (r *relay) finish(b *heldBatch) {
	r.fwg.Add(1)
	go func() {
		defer r.fwg.Done()
		<-b.settled
		r.endHeld(b)
		<-r.slots
	}()
}

// finishHeld waits until every held claim has ended: the bus calls it once
// the dispatcher has stopped, so that every row handed to it has its
// verdict. The relay's loop must have stopped.
func (r *relay) finishHeld() { r.fwg.Wait() }

// endHeld commits a settled batch: the packs to split split, the failures
// recorded, the confirmed rows and the split packs deleted. If the claim cannot commit (its connection was lost, the
// database is failing over) it is rolled back, which leaves every row in
// the table, and the acker deletes the confirmed rows and records the
// failures as it does for the fast path's; a row it cannot delete is sent
// again, a duplicate, never a loss.
//
// Once Shutdown stops waiting (the dispatcher's context ends) the claim's
// statements still get shutdownGrace: they delete rows the broker
// confirmed, which would otherwise be sent again. (The COMMIT itself takes
// no context in database/sql.)
func (r *relay) endHeld(b *heldBatch) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.disp.ctx), heldWriteTimeout)
	defer cancel()
	stop := context.AfterFunc(r.disp.ctx, func() { time.AfterFunc(shutdownGrace, cancel) })
	defer stop()
	b.splitPacks(ctx, r.store, r.disp.acker.begin, r.disp.acker.retryBase)
	failed, _ := groupFailures(b.failures) // held-back rows need no write
	err := func() error {
		for _, g := range failed {
			if err := b.claim.Fail(ctx, g.ids, g.cause); err != nil {
				return err
			}
		}
		return b.claim.Commit(ctx, b.done)
	}()
	if err == nil {
		return
	}
	_ = b.claim.Rollback()
	r.log.Warn("final: relay could not end a held claim; the acker deletes its confirmed rows instead", "rows", len(b.done), "failed", len(b.failures), "err", err)
	for _, id := range b.done {
		r.disp.acker.done(id)
	}
	for _, f := range b.failures {
		if !errors.Is(f.err, errHeldBack) {
			// The rows were not leased: claimed_by is NULL, or the owner of
			// a lease that ran out, whose row the acker's Fail then leaves
			// as it is (it is sent again without a backoff).
			f.owner = ""
			r.disp.acker.fail(f)
		}
	}
}

// heldWriteTimeout bounds the statements that end a held claim, as the
// acker's are bounded.
const heldWriteTimeout = 30 * time.Second

// scanHeld is scan with a held claim: it waits for one of the slots
// (OutboxHeldClaims) first, and has the batch ended (finish) before it
// hands the rows to the dispatcher. The claim's idle bound is OutboxLease:
// the rows' window closes PublishTimeout before it, so their last verdict
// comes in time.
func (r *relay) scanHeld() (full bool, err error) {
	select {
	case r.slots <- struct{}{}:
	case <-r.ctx.Done():
		return false, nil
	}
	sendBy := time.Now().Add(r.lease - r.disp.timeout)
	limit, maxBytes := r.bounds()
	claim, err := r.holder.ClaimHeld(r.ctx, r.owner, limit, maxBytes, r.lease)
	if err != nil || claim == nil {
		<-r.slots
		return false, err
	}
	recs := claim.Records()
	b := newHeldBatch(claim, len(recs))
	r.finish(b)
	full = r.measure(recs, limit, maxBytes)
	for i, rec := range recs {
		recs[i] = outbox.Record{} // once handed on, the dispatcher alone holds it
		if rec.Err != nil {
			r.reportUndecodable(rec)
			b.failed(failure{id: rec.ID, owner: r.owner, err: rec.Err})
			continue
		}
		o := outgoingOf(rec)
		o.owner, o.sendBy, o.held = r.owner, sendBy, b
		if err := r.disp.submit(r.ctx, o); err != nil {
			b.failed(failure{id: rec.ID, owner: r.owner, err: errHeldBack})
			for _, left := range recs[i+1:] { // not sent: available again when the claim ends
				b.failed(failure{id: left.ID, owner: r.owner, err: errHeldBack})
			}
			return full, err
		}
	}
	return full, nil
}

// relayOptions are the bus's options for its relay: OutboxHeldClaims
// lowered (heldClaimsFor) on a store that holds its claims, when the
// database's pool is too small for them.
func (b *Bus) relayOptions(store outbox.Store) Options {
	o := b.opt
	if _, ok := store.(outbox.Holder); !ok {
		return o
	}
	maxOpen := b.db.Stats().MaxOpenConnections
	if n := heldClaimsFor(o, maxOpen); n != o.OutboxHeldClaims {
		b.log.Info("final: OutboxHeldClaims lowered: the database pool is too small for it (held claims keep NumAcker + 1 connections free; 0 leases every claim)",
			"OutboxHeldClaims", o.OutboxHeldClaims, "now", n, "pool", maxOpen, "NumAcker", o.NumAcker)
		o.OutboxHeldClaims = n
	}
	return o
}

// heldClaimsFor returns the held claims the relay may make on a pool of at
// most maxOpen connections (0: no bound): OutboxHeldClaims, but no more
// than leave NumAcker + 1 connections free. Held claims that took the
// acker's connections would stop it, and with it the confirms their own
// rows wait for.
func heldClaimsFor(o Options, maxOpen int) int {
	if maxOpen <= 0 {
		return o.OutboxHeldClaims
	}
	return max(0, min(o.OutboxHeldClaims, maxOpen-o.NumAcker-1))
}
