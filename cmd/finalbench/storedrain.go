package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/finalbus/final/outbox"
)

// inSeries is a model of a drain in which every message costs the broker
// the time it costs at its own rate a and the store the time at its rate b:
// 1/(1/a + 1/b). It is not a bound: on two cores that the broker, the
// database and the process share, drains have run at 0.79-1.14 of it
// (docs/performance.md, "The drain: what the store and the broker each
// allow"). By it a drain reaches 0.80 of the broker's rate only with a
// store four times as fast. 0 when either is unknown.
func inSeries(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return 1 / (1/a + 1/b)
}

// storeDrain measures the database's share of a backlog drain, without a
// broker: n rows written as the drain phase writes them (100 per
// transaction), then claimed by the store alone, OutboxScanOffset rows a
// claim, one claim after another as the relay claims, while NumAcker
// goroutines delete each claimed batch, AckBatchSize rows a DELETE, as the
// acker does. It returns rows per second until the last DELETE.
//
// With a store that holds its claims (outbox.Holder) and OutboxHeldClaims
// above 0, it claims as the relay then does instead: OutboxHeldClaims
// goroutines each claim a batch held by its transaction and delete it in
// the same transaction (heldDrain).
//
// The library's drain does this and publishes and consumes every row on
// the same cores, so it cannot drain faster: this is the database's
// ceiling for the drain, beside the broker's (raw publish + consume).
func (e *benchEnv) storeDrain(n int) (float64, error) {
	e.settle()
	ctx := context.Background()
	table := "final_" + e.service("storedrain") + "_outbox" // dropped at teardown
	s, err := e.cfg.db.store.NewStore(e.db, table, outbox.StoreOptions{})
	if err != nil {
		return 0, err
	}
	if c, ok := s.(io.Closer); ok { // the MySQL store's prepared insert
		defer c.Close()
	}
	if err := s.Migrate(ctx); err != nil {
		return 0, err
	}
	body := e.body("bench.storedrain", 0)
	for i := 0; i < n; i += 100 {
		tx, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			return 0, err
		}
		for k := i; k < min(n, i+100); k++ {
			if _, err := s.Insert(ctx, outbox.SQLTx(tx), outbox.Row{Body: body}); err != nil {
				_ = tx.Rollback()
				return 0, fmt.Errorf("store drain: insert: %w", err)
			}
		}
		if err := tx.Commit(); err != nil {
			return 0, err
		}
	}

	o := e.options()
	if h, ok := s.(outbox.Holder); ok && o.OutboxHeldClaims > 0 {
		return heldDrain(ctx, h, n, int(o.OutboxScanOffset), o.OutboxHeldClaims)
	}
	batches := make(chan []int64, o.NumAcker)
	errs := make([]error, o.NumAcker)
	var wg sync.WaitGroup
	for a := range o.NumAcker {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ids := range batches {
				for len(ids) > 0 && errs[a] == nil {
					k := min(len(ids), o.AckBatchSize)
					errs[a] = s.Delete(ctx, ids[:k])
					ids = ids[k:]
				}
			}
		}()
	}
	start := time.Now()
	deadline := start.Add(5 * time.Minute)
	var claimErr error
	for claimed := 0; claimed < n; {
		recs, err := s.Claim(ctx, "finalbench", int(o.OutboxScanOffset), 0, time.Hour)
		if err != nil {
			claimErr = fmt.Errorf("store drain: claim: %w", err)
			break
		}
		if time.Now().After(deadline) {
			claimErr = fmt.Errorf("store drain: %d of %d rows claimed after 5 minutes", claimed, n)
			break
		}
		if len(recs) == 0 {
			continue // rows a concurrent DELETE held were skipped: look again
		}
		ids := make([]int64, len(recs))
		for i, r := range recs {
			ids[i] = r.ID
		}
		claimed += len(ids)
		batches <- ids
	}
	close(batches)
	wg.Wait()
	took := time.Since(start)
	if err := errors.Join(append(errs, claimErr)...); err != nil {
		return 0, err
	}
	return float64(n) / took.Seconds(), nil
}

// heldDrain claims and deletes n rows of h with claims goroutines, each
// claiming batch rows held by its transaction and deleting them in it, and
// returns rows per second.
func heldDrain(ctx context.Context, h outbox.Holder, n, batch, claims int) (float64, error) {
	var (
		mu      sync.Mutex
		drained int
		wg      sync.WaitGroup
	)
	errs := make([]error, claims)
	start := time.Now()
	deadline := start.Add(5 * time.Minute)
	for c := range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				left := n - drained
				mu.Unlock()
				if left <= 0 {
					return
				}
				if time.Now().After(deadline) {
					errs[c] = fmt.Errorf("store drain: %d of %d rows held and deleted after 5 minutes", n-left, n)
					return
				}
				held, err := h.ClaimHeld(ctx, "finalbench", batch, 0, time.Minute)
				if err != nil {
					errs[c] = fmt.Errorf("store drain: claim: %w", err)
					return
				}
				if held == nil {
					continue // rows another claim held were skipped: look again
				}
				recs := held.Records()
				ids := make([]int64, len(recs))
				for i, r := range recs {
					ids[i] = r.ID
				}
				if err := held.Commit(ctx, ids); err != nil {
					errs[c] = fmt.Errorf("store drain: commit: %w", err)
					return
				}
				mu.Lock()
				drained += len(ids)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(n) / took.Seconds(), nil
}
