package final

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/outbox"
)

// failure is a publish that did not end in a confirm.
type failure struct {
	id    int64
	owner string
	cause string
}

// acker removes confirmed rows and records failed ones, in batches: it takes
// what is queued (up to AckBatchSize) and writes it in one statement, so the
// batch grows with the load and no timer adds latency.
type acker struct {
	store outbox.Store
	log   *slog.Logger
	batch int
	ctx   context.Context // cancelled when Shutdown stops waiting

	dones chan int64
	fails chan failure
	wg    sync.WaitGroup
}

func newAcker(ctx context.Context, s outbox.Store, o Options) *acker {
	return &acker{
		store: s,
		log:   o.Logger,
		batch: o.AckBatchSize,
		ctx:   ctx,
		dones: make(chan int64, 4*o.AckBatchSize),
		fails: make(chan failure, 1024),
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
	for dones != nil || fails != nil {
		select {
		case id, ok := <-dones:
			if !ok {
				dones = nil
				continue
			}
			ids = append(ids[:0], id)
		drain:
			for len(ids) < a.batch {
				select {
				case id, ok := <-dones:
					if !ok {
						dones = nil
						break drain
					}
					ids = append(ids, id)
				default:
					break drain
				}
			}
			a.retry("delete confirmed rows", func(ctx context.Context) error { return a.store.Delete(ctx, ids) })
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

// recordFailures writes one UPDATE per (owner, cause).
func (a *acker) recordFailures(batch []failure) {
	type group struct{ owner, cause string }
	groups := map[group][]int64{}
	for _, f := range batch {
		g := group{f.owner, f.cause}
		groups[g] = append(groups[g], f.id)
	}
	for g, ids := range groups {
		a.retry("record failed publishes", func(ctx context.Context) error {
			return a.store.Fail(ctx, g.owner, ids, g.cause)
		})
	}
}

// retry runs op until it succeeds or Shutdown stops waiting. Giving up is
// safe: a row not deleted is re-sent later (a duplicate, not a loss); a
// failure not recorded is retried when its lease or fast-path window ends.
func (a *acker) retry(what string, op func(ctx context.Context) error) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
		err := op(ctx)
		cancel()
		if err == nil {
			return
		}
		if a.ctx.Err() != nil {
			a.log.Warn("final: gave up at shutdown; the rows will be re-sent", "op", what, "err", err)
			return
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
