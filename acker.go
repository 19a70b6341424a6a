package final

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/outbox"
)

// failure is a row that did not end in a confirm: its publish failed, it
// cannot be decoded, or it was held back behind its key (errHeldBack).
type failure struct {
	id    int64
	owner string
	topic string
	err   error
	// split lists, for a pack to be split rather than failed whole
	// (packVerdict.unconfirmed), the indexes of its messages that were not
	// confirmed: each becomes a row of its own (splitPack).
	split []int
}

// acker removes confirmed rows and records failed ones, in batches. A
// batch of confirmed rows is written in one DELETE once AckBatchSize rows
// are in it or AckLinger has passed since its first: the rows are
// confirmed already, so the wait delays no delivery, and one statement for
// many rows costs the database far less than one for each few. Failures
// are recorded as soon as an acker is free (one lingering over a batch
// leaves them to the other, or takes them after), what is queued in one go.
type acker struct {
	store     outbox.Store
	log       *slog.Logger
	batch     int
	linger    time.Duration
	retryBase time.Duration   // when the rows of a split pack become available
	begin     outbox.Beginner // the transactions a split pack's rows are inserted in; nil: on their own
	ctx       context.Context // cancelled when Shutdown stops waiting

	dones chan int64
	fails chan failure
	wg    sync.WaitGroup

	dropped errorReport // writes that failed for good
}

func newAcker(ctx context.Context, s outbox.Store, o Options) *acker {
	return &acker{
		store:     s,
		log:       o.Logger,
		batch:     o.AckBatchSize,
		linger:    min(o.AckLinger, o.OutboxScanAgoTime/2),
		retryBase: o.OutboxRetryBase,
		ctx:       ctx,
		dones:     make(chan int64, 4*o.AckBatchSize),
		fails:     make(chan failure, 1024),
	}
}

func (a *acker) start(n int) {
	for i := 0; i < n; i++ {
		a.wg.Add(1)
		go a.run()
	}
}

func (a *acker) done(id int64)  { a.dones <- id }
func (a *acker) fail(f failure) { a.fails <- f }
func (a *acker) closeAndWait()  { close(a.dones); close(a.fails); a.wg.Wait() }

func (a *acker) run() {
	defer a.wg.Done()
	dones, fails := a.dones, a.fails
	ids := make([]int64, 0, a.batch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for dones != nil || fails != nil {
		select {
		case id, ok := <-dones:
			if !ok {
				dones = nil
				continue
			}
			var open bool
			if ids, open = a.fill(append(ids[:0], id), dones, linger); !open {
				dones = nil
			}
			a.retry("delete confirmed rows", len(ids), func(ctx context.Context) error { return a.store.Delete(ctx, ids) })
		case f, ok := <-fails:
			if !ok {
				fails = nil
				continue
			}
			batch := []failure{f}
		drainFails:
			for len(batch) < a.batch {
				select {
				case f, ok := <-fails:
					if !ok {
						fails = nil
						break drainFails
					}
					batch = append(batch, f)
				default:
					break drainFails
				}
			}
			a.recordFailures(batch)
		}
	}
}

// fill adds confirmed rows to ids until it holds a.batch, a.linger has
// passed since the call (with no linger: until nothing more is queued), or
// dones is closed (open is then false).
func (a *acker) fill(ids []int64, dones <-chan int64, linger *time.Timer) (_ []int64, open bool) {
	var expired <-chan time.Time // nil: take only what is queued
	if a.linger > 0 {
		linger.Reset(a.linger)
		defer linger.Stop()
		expired = linger.C
	}
	for len(ids) < a.batch {
		var (
			id int64
			ok bool
		)
		if expired == nil {
			select {
			case id, ok = <-dones:
			default:
				return ids, true
			}
		} else {
			select {
			case id, ok = <-dones:
			case <-expired:
				return ids, true
			}
		}
		if !ok {
			return ids, false
		}
		ids = append(ids, id)
	}
	return ids, true
}

// recordFailures records failed rows with one UPDATE per (owner, cause),
// so rows that failed for the same reason share it, and gives held-back
// rows back to the table without counting an attempt, one UPDATE per
// owner: they were not sent, so only their lease ends.
func (a *acker) recordFailures(batch []failure) {
	failed, released := groupFailures(a.splitPacks(batch))
	// Failures first: a row released before the failure of the row that
	// held it back is recorded could be claimed, and held back, again.
	for _, g := range failed {
		a.retry("record failed publishes", len(g.ids), func(ctx context.Context) error {
			return a.store.Fail(ctx, g.owner, g.ids, g.cause)
		})
	}
	for owner, ids := range released {
		a.retry("release held-back rows", len(ids), func(ctx context.Context) error {
			return a.store.Release(ctx, owner, ids)
		})
	}
}

// splitPacks splits the packs of batch whose verdict says so (failure.split):
// it inserts a row for each of their unconfirmed messages (splitPack), then
// deletes the pack. It returns the rest of batch, with the packs it could
// not split, to be failed whole as before.
func (a *acker) splitPacks(batch []failure) []failure {
	rest := batch[:0]
	for _, f := range batch {
		if f.split != nil {
			var inserted bool
			err := a.retry("split a failed pack", len(f.split), func(ctx context.Context) (err error) {
				inserted, err = splitPack(ctx, a.store, a.begin, f, a.retryBase)
				return err
			})
			if inserted {
				a.retry("delete a split pack", 1, func(ctx context.Context) error { return a.store.Delete(ctx, []int64{f.id}) })
			}
			if err == nil {
				continue
			}
			f.split = nil
		}
		rest = append(rest, f)
	}
	return rest
}

// failGroup is failed rows of one owner that one statement records, under
// one cause.
type failGroup struct {
	owner, cause string
	ids          []int64
}

// groupFailures groups the failures of batch by (owner, cause), first
// seen first so that writes follow the verdicts, and the rows held back
// (errHeldBack) by owner.
func groupFailures(batch []failure) (failed []failGroup, released map[string][]int64) {
	type group struct{ owner, cause string }
	var (
		index    = map[group]int{}
		detailed = map[string]bool{} // the causes that kept their detail
	)
	released = map[string][]int64{}
	for _, f := range batch {
		if errors.Is(f.err, errHeldBack) {
			released[f.owner] = append(released[f.owner], f.id)
			continue
		}
		c := causeOf(f.err, f.topic)
		text := c.detail
		if !detailed[text] {
			if len(detailed) < maxDetailedCauses {
				detailed[text] = true
			} else {
				text = c.class // a batch of many distinct details: keep it to a few statements
			}
		}
		g := group{f.owner, text}
		i, ok := index[g]
		if !ok {
			i = len(failed)
			index[g] = i
			failed = append(failed, failGroup{owner: f.owner, cause: text})
		}
		failed[i].ids = append(failed[i].ids, f.id)
	}
	return failed, released
}

// maxDetailedCauses bounds the distinct causes with their detail (an
// unroutable topic, an unclassified error's text) in one batch; the rows
// beyond it are recorded under their class, so a batch costs at most
// maxDetailedCauses plus one UPDATE per class and owner.
const maxDetailedCauses = 16

// cause is why a row failed, as its last_error records it: without what
// differs from one message to the next (its UUID, the delivery tag), so
// that rows failing for the same reason share one UPDATE.
type cause struct {
	class  string // the reason alone: one per sentinel
	detail string // the reason and what an operator needs to act on it
}

// errConfirmTimeout is the verdict on a publish not confirmed within
// PublishTimeout.
var errConfirmTimeout = errors.New("final: publish not confirmed within PublishTimeout")

// causeOf classifies err, the verdict on a message of topic. An unroutable
// message names its topic, which is what an operator must bind a queue to
// (or stop publishing): the topic differs between rows only as much as
// their topics do, so the rows of one topic still share a statement.
func causeOf(err error, topic string) cause {
	var class string
	switch {
	case errors.Is(err, mq.ErrUnroutable):
		return cause{mq.ErrUnroutable.Error(), fmt.Sprintf("%v: no queue is bound to topic %q", mq.ErrUnroutable, topic)}
	case errors.Is(err, mq.ErrNacked):
		class = mq.ErrNacked.Error()
	case errors.Is(err, mq.ErrUnavailable):
		class = mq.ErrUnavailable.Error()
	case errors.Is(err, errConfirmTimeout), errors.Is(err, context.DeadlineExceeded):
		class = errConfirmTimeout.Error()
	case errors.Is(err, message.ErrDecode):
		class = "final: the stored message cannot be decoded by this version of the library"
	default:
		// Unclassified: its own text, which may be all the operator gets.
		return cause{"final: publish failed (the error is logged at Debug)", err.Error()}
	}
	return cause{class, class}
}

// retry runs op until it succeeds, fails for good, or Shutdown stops
// waiting. A transient error (outbox.ErrTransient: a lost connection, a
// deadlock, a lock wait timeout; or op's own timeout) is retried with
// backoff; any other is reported and op is dropped, since trying again
// cannot help and would hold up every write queued behind it.
//
// It returns nil once op succeeded, and op's last error when it gave up.
// Giving up loses nothing: the rows stay in the outbox. A row not deleted
// is sent again when the relay claims it (a duplicate, not a loss); a
// failure not recorded or a row not released is retried when its lease or
// fast-path window ends.
func (a *acker) retry(what string, rows int, op func(ctx context.Context) error) error {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
		err := op(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if a.ctx.Err() != nil {
			a.log.Warn("final: gave up at shutdown; the rows will be re-sent", "op", what, "err", err)
			return err
		}
		if !errors.Is(err, outbox.ErrTransient) && !errors.Is(err, context.DeadlineExceeded) {
			a.dropped.report(a.log, what, rows, err)
			return err
		}
		a.log.Warn("final: outbox write failed, retrying", "op", what, "attempt", attempt+1, "err", err)
		t := time.NewTimer(mq.Backoff(50*time.Millisecond, 2*time.Second, attempt))
		select {
		case <-t.C:
		case <-a.ctx.Done():
			t.Stop()
		}
	}
}

// errorReport logs dropped writes at Error, at most once per
// errorReportEvery, with the count of those dropped since the last line: a
// permanent error (a dropped table, a revoked privilege) fails every batch
// alike, and one line says it.
type errorReport struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int // writes dropped since the last line
	rows       int // their rows
}

const errorReportEvery = time.Minute

func (r *errorReport) report(log *slog.Logger, what string, rows int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); r.last.IsZero() || now.Sub(r.last) >= errorReportEvery {
		log.Error("final: outbox write failed for good and was dropped; its rows stay in the outbox and the relay sends them again",
			"op", what, "rows", rows, "err", err, "dropped_since_last_report", r.suppressed, "their_rows", r.rows)
		r.last, r.suppressed, r.rows = now, 0, 0
		return
	}
	r.suppressed++
	r.rows += rows
	log.Debug("final: outbox write failed for good and was dropped", "op", what, "rows", rows, "err", err)
}
