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

// startFinisher starts the goroutine that ends the relay's held claims, in
// the order they were claimed. The bus stops it with finishHeld once the
// dispatcher has given its last verdict.
func (r *relay) startFinisher() {
	r.fwg.Add(1)
	go func() {
		defer r.fwg.Done()
		for b := range r.finishing {
			<-b.settled
			r.endHeld(b)
			<-r.slots
		}
	}()
}

// finishHeld ends the held claims still open, once every row handed to
// the dispatcher has its verdict (the dispatcher has stopped), and stops
// the finisher. The relay's loop must have stopped.
func (r *relay) finishHeld() {
	if r.holder == nil {
		return
	}
	r.finishOnce.Do(func() { close(r.finishing) })
	r.fwg.Wait()
}

// endHeld commits a settled batch: the failures recorded, the confirmed
// rows deleted. If the claim cannot commit (its connection was lost, the
// database is failing over) it is rolled back, which leaves every row in
// the table, and the acker deletes the confirmed rows and records the
// failures as it does for the fast path's; a row it cannot delete is sent
// again, a duplicate, never a loss.
//
// Once Shutdown stops waiting (the dispatcher's context ends) the commit
// still gets shutdownGrace: it deletes rows the broker confirmed, which
// would otherwise be sent again.
func (r *relay) endHeld(b *heldBatch) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.disp.ctx), 30*time.Second)
	defer cancel()
	stop := context.AfterFunc(r.disp.ctx, func() { time.AfterFunc(shutdownGrace, cancel) })
	defer stop()
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

// scanHeld is scan with a held claim: it waits for one of the slots
// (OutboxHeldClaims) first, and hands the batch to the finisher before
// its rows to the dispatcher.
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
	r.finishing <- b // never blocks: it holds at most one batch per slot
	full = r.measure(recs, limit, maxBytes)
	for i, rec := range recs {
		recs[i] = outbox.Record{} // once handed on, the dispatcher alone holds it
		if rec.Err != nil {
			r.reportUndecodable(rec)
			b.failed(failure{id: rec.ID, owner: r.owner, err: rec.Err})
			continue
		}
		o := outgoing{id: rec.ID, key: rec.OrderKey, owner: r.owner, msg: rec.Message, body: rec.Body, sendBy: sendBy, held: b}
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
