package final

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/outbox"
)

// relay is the safety net: it claims rows that nobody confirmed in time
// (the fast path failed, the process died, the broker was away, the row
// was delayed) and sends them again through the dispatcher.
//
// A claim leases rows to this instance (outbox.Store.Claim: SELECT … FOR
// UPDATE SKIP LOCKED, then a lease written in the same transaction), so
// instances sharing the table never send the same row at the same time.
// A batch is bounded in rows (OutboxScanOffset) and in bytes, by the room
// the dispatcher has (DispatchQueueBytes less what it holds): so it goes
// into the dispatcher at once, or behind at most one batch of the overflow
// (half DispatchQueueBytes), and is sent within its lease whatever the
// size of its messages. A full batch is followed at once by the next, so a
// backlog drains at the broker's pace, and so are the first short batches
// after it (see rechecks); otherwise the relay sleeps OutboxScanInterval.
type relay struct {
	store    outbox.Store
	disp     *dispatcher
	ready    mq.ReadyNotifier // nil if the provider cannot say
	log      *slog.Logger
	owner    string
	batch    int
	rowSize  int // mean body size of the last batch; 0: none yet
	rowMsgs  int // mean messages per row of the last batch (packs hold several); 0: none yet
	interval time.Duration
	lease    time.Duration

	// undecodable are the rows reported as undecodable at Warn; scan alone
	// uses it.
	undecodable map[int64]bool

	// With a store that can hold its claims (outbox.Holder) and
	// OutboxHeldClaims > 0, holder is the store: each batch is a held
	// claim, which takes one of slots until it has ended (finish); fwg
	// counts the goroutines that end them.
	holder outbox.Holder
	slots  chan struct{}
	fwg    sync.WaitGroup

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newRelay(s outbox.Store, d *dispatcher, owner string, o Options) *relay {
	ctx, cancel := context.WithCancel(context.Background())
	ready, _ := d.provider.(mq.ReadyNotifier)
	r := &relay{
		store:    s,
		disp:     d,
		ready:    ready,
		log:      o.Logger,
		owner:    owner,
		batch:    int(o.OutboxScanOffset),
		interval: o.OutboxScanInterval,
		lease:    o.OutboxLease,
		ctx:      ctx,
		cancel:   cancel,

		undecodable: map[int64]bool{},
	}
	if h, ok := s.(outbox.Holder); ok && o.OutboxHeldClaims > 0 {
		r.holder = h
		r.slots = make(chan struct{}, o.OutboxHeldClaims)
	}
	return r
}

func (r *relay) start() {
	r.wg.Add(1)
	go r.run()
}

// stop ends the loop and waits for it. Rows it leased but did not hand
// over are claimed again when the lease ends; those of a held claim are
// available again when the claim ends (finish).
func (r *relay) stop() {
	r.cancel()
	r.wg.Wait()
}

// rechecks is how many short batches in a row the relay claims again at
// once after a full one. A short batch usually means the backlog is
// drained, but SKIP LOCKED also passes over rows that a concurrent
// statement (the acker's DELETE, another relay's claim) holds for a moment,
// so a short batch can end a claim early with rows still due. Looking again
// costs up to two claims that find nothing when the backlog is in fact
// drained.
const rechecks = 2

func (r *relay) run() {
	defer r.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	short := rechecks // short batches since the last full one; none was full yet
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		var (
			full bool
			err  error
		)
		if r.holder != nil {
			full, err = r.scanHeld()
		} else {
			full, err = r.scan()
		}
		if err != nil && r.ctx.Err() == nil {
			r.log.Warn("final: relay scan failed", "err", err)
		}
		if err := r.pruneHeld(); err != nil && r.ctx.Err() == nil {
			r.log.Warn("final: relay could not check held rows", "err", err)
		}
		next := r.interval
		switch {
		case err != nil:
			short = rechecks
		case full:
			next, short = 0, 0
		case short < rechecks:
			next = 0
			short++
		}
		if r.waitForBroker() {
			next = 0 // the connection is back: resume at once
		} else if r.ready == nil && r.disp.brokerDown.Load() {
			next = r.interval
		}
		t.Reset(next)
	}
}

// waitForBroker blocks while the provider reports the broker disconnected,
// for up to one interval, rather than claiming rows that cannot be sent.
// It reports whether it waited and the broker is back.
func (r *relay) waitForBroker() bool {
	if r.ready == nil {
		return false
	}
	ready := r.ready.Ready()
	select {
	case <-ready:
		return false // connected: nothing to wait for
	default:
	}
	t := time.NewTimer(r.interval)
	defer t.Stop()
	select {
	case <-ready:
		return true
	case <-t.C:
	case <-r.ctx.Done():
	}
	return false
}

// pruneHeld lets the dispatcher forget the held rows of ordered keys that
// are gone from the table, sent by another instance's relay; otherwise
// their keys would wait for them for ever.
func (r *relay) pruneHeld() error {
	ids := r.disp.order.held(r.batch)
	if len(ids) == 0 {
		return nil
	}
	left, err := r.store.Remaining(r.ctx, ids)
	if err != nil {
		return err
	}
	still := make(map[int64]bool, len(left))
	for _, id := range left {
		still[id] = true
	}
	gone := ids[:0]
	for _, id := range ids {
		if !still[id] {
			gone = append(gone, id)
		}
	}
	r.disp.order.forget(gone)
	return nil
}

// bounds returns the bounds of the next batch: in bytes, the dispatcher's
// room (at least 1: a claim takes one row whatever its size); in rows,
// about OutboxScanOffset messages at the last batch's messages per row
// (a batch of packs is sent within its lease as one of single messages
// is), and as many rows of the last batch's mean size as the room holds,
// so that the store does not look at many more rows than it may take (it
// reads the size of each row it considers).
func (r *relay) bounds() (limit, maxBytes int) {
	room := int(r.disp.bytes.room())
	limit = r.batch
	if r.rowMsgs > 1 {
		limit = max(1, limit/r.rowMsgs)
	}
	if r.rowSize > 0 {
		limit = min(limit, room/r.rowSize+1)
	}
	return limit, room
}

// scan claims one batch and hands it to the dispatcher; it reports whether
// the batch was full, in rows or in bytes.
func (r *relay) scan() (full bool, err error) {
	sendBy := time.Now().Add(r.lease - r.disp.timeout)
	limit, maxBytes := r.bounds()
	recs, err := r.store.Claim(r.ctx, r.owner, limit, maxBytes, r.lease)
	if err != nil {
		return false, err
	}
	full = r.measure(recs, limit, maxBytes)
	for i, rec := range recs {
		recs[i] = outbox.Record{} // once handed on, the dispatcher alone holds it
		if rec.Err != nil {
			r.reportUndecodable(rec)
			r.disp.acker.fail(failure{id: rec.ID, owner: r.owner, err: rec.Err})
			continue
		}
		o := outgoingOf(rec)
		o.owner, o.sendBy = r.owner, sendBy
		if err := r.disp.submit(r.ctx, o); err != nil {
			return full, err
		}
	}
	return full, nil
}

// measure notes the mean size of a claimed batch's rows and reports
// whether the batch was full, in rows or in bytes.
func (r *relay) measure(recs []outbox.Record, limit, maxBytes int) (full bool) {
	size, msgs := 0, messagesIn(recs)
	for _, rec := range recs {
		size += len(rec.Body)
	}
	if len(recs) > 0 {
		r.rowSize, r.rowMsgs = size/len(recs), msgs/len(recs)
		r.log.Debug("final: relaying unconfirmed rows", "rows", len(recs), "messages", msgs, "bytes", size)
	}
	return len(recs) == limit || size >= maxBytes
}

// maxUndecodableReports bounds the rows remembered as reported
// undecodable; rows beyond it are logged at Debug only.
const maxUndecodableReports = 1024

// reportUndecodable logs a row that cannot be decoded: at Warn the first
// time this process claims it, at Debug afterwards.
//
// The row stays in the table, and its failures are counted, so it is
// claimed again every OutboxRetryMax once its backoff has grown. It is not
// moved aside or deleted: during a rolling deploy the row may have been
// written by a newer version of the library, whose instances can decode and
// send it, and an operator can read it where the outbox keeps everything
// (last_error says why it is there; DELETE it, or fix and keep it). Its
// key's later rows wait for it at most OutboxRetryMax: they are claimed
// with it and sent without it, since no instance of this version can send
// it first.
func (r *relay) reportUndecodable(rec outbox.Record) {
	if r.undecodable[rec.ID] || len(r.undecodable) >= maxUndecodableReports {
		r.log.Debug("final: outbox row cannot be decoded; it stays in the table", "id", rec.ID, "attempts", rec.Attempts, "err", rec.Err)
		return
	}
	r.undecodable[rec.ID] = true
	r.log.Warn("final: outbox row cannot be decoded; it stays in the table and is retried every OutboxRetryMax (reported once)",
		"id", rec.ID, "attempts", rec.Attempts, "err", rec.Err)
}
