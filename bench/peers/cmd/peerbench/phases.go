package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// commitPhase runs n producers for d, each committing a business insert
// and -per-tx messages per transaction while the relay runs (all together
// held to rate tx/s when rate > 0, as fast as they go otherwise), then
// waits for the messages and accounts for them.
func commitPhase(ctx context.Context, sys system, name string, n int, d time.Duration, rate float64, c config) (*phaseResult, error) {
	sys.settle(ctx)
	tr := newTracker()
	ph, err := sys.open(ctx, name, tr)
	if err != nil {
		return nil, err
	}
	defer ph.close()
	if err := ph.startRelay(ctx); err != nil {
		return nil, err
	}
	var next atomic.Uint64
	start := time.Now()
	commits, failed, took, err := produce(n, d, rate, func() error {
		seqs := make([]uint64, c.perTx)
		for k := range seqs {
			seqs[k] = next.Add(1)
		}
		if err := ph.commit(ctx, seqs); err != nil {
			return err
		}
		tr.committed(seqs, time.Now())
		return nil
	})
	if commits == 0 {
		return nil, fmt.Errorf("no transaction committed: %w", err)
	}
	if err != nil {
		say("  %d transactions failed, the first: %v", failed, err)
	}
	underLoad := tr.distinct()
	stopped := time.Now()
	complete, last := tr.wait(commits*int64(c.perTx), c.grace, c.maxWait, c.linger)
	waited := time.Since(stopped)
	if complete {
		waited = last.Sub(stopped)
	}
	a := tr.account()
	e2e := 0.0
	if !last.IsZero() {
		e2e = float64(commits) / last.Sub(start).Seconds()
	}
	return &phaseResult{
		Producers:  n,
		FailedTx:   failed,
		CommitTx:   float64(commits) / took.Seconds(),
		E2ETx:      e2e,
		LoadMsgs:   float64(underLoad) / took.Seconds(),
		Latency:    tr.latency(),
		Committed:  a.committed,
		Delivered:  a.delivered,
		Lost:       a.lost,
		Duplicates: a.duplicates,
		Phantoms:   a.phantoms,
		LostNote:   explain(ctx, ph, a),
		Complete:   complete,
		WaitedS:    max(0, waited.Seconds()),
	}, nil
}

// drainPhase commits -backlog messages, 100 per transaction, while the
// relay is stopped, then starts it and times the drain to the consumer.
func drainPhase(ctx context.Context, sys system, c config) (*drainResult, error) {
	sys.settle(ctx)
	tr := newTracker()
	ph, err := sys.open(ctx, "drain", tr)
	if err != nil {
		return nil, err
	}
	defer ph.close()
	const perTx = 100
	for next := uint64(0); next < uint64(c.backlog); {
		seqs := make([]uint64, 0, perTx)
		for len(seqs) < perTx && next < uint64(c.backlog) {
			next++
			seqs = append(seqs, next)
		}
		if err := ph.commit(ctx, seqs); err != nil {
			return nil, fmt.Errorf("backlog: %w", err)
		}
		tr.committed(seqs, time.Now())
	}
	if got := tr.distinct(); got != 0 {
		return nil, fmt.Errorf("drain: %d messages delivered while the %s was stopped", got, sys.relayName())
	}
	start := time.Now()
	if err := ph.startRelay(ctx); err != nil {
		return nil, err
	}
	_, last := tr.wait(int64(c.backlog), c.grace, c.maxWait, c.linger)
	a := tr.account()
	rate := 0.0
	if !last.IsZero() {
		rate = float64(a.delivered) / last.Sub(start).Seconds()
	}
	return &drainResult{Messages: a.committed, MsgPerS: rate, Delivered: a.delivered,
		Lost: a.lost, LostNote: explain(ctx, ph, a), Duplicates: a.duplicates, Phantoms: a.phantoms}, nil
}

// produce runs n producers until d has passed, each calling tx for its
// next transaction; with rate > 0 they start transactions at rate tx/s
// between them, evenly spaced, as cmd/finalbench's paced producers do. It
// returns the transactions committed, those that failed (a deadlock, say:
// the producer goes on, as in cmd/finalbench), the time taken and the
// first error.
func produce(n int, d time.Duration, rate float64, tx func() error) (commits, failed int64, took time.Duration, err error) {
	var (
		done     atomic.Int64
		fails    atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		start    = time.Now()
		stop     = start.Add(d)
	)
	var every time.Duration // each producer's interval when paced
	if rate > 0 {
		every = time.Duration(float64(n) / rate * float64(time.Second))
	}
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(time.Duration(w) * every / time.Duration(n))
			for time.Now().Before(stop) {
				if every > 0 {
					if wait := time.Until(next); wait > 0 {
						time.Sleep(wait) // pacing the load, not synchronisation
					}
					next = next.Add(every)
				}
				if err := tx(); err != nil {
					fails.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return done.Load(), fails.Load(), time.Since(start), firstErr
}

// payload is a payload of size bytes (at least 8) carrying seq in its
// first 8.
func payload(size int, seq uint64) []byte {
	p := make([]byte, max(size, 8))
	binary.BigEndian.PutUint64(p, seq)
	return p
}

// bizDDL creates the business table, as cmd/finalbench's does.
func bizDDL(db, table string) string {
	if db == "postgres" {
		return "CREATE TABLE " + table + " (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ref BIGINT NOT NULL, amount INT NOT NULL, created_at TIMESTAMPTZ(3) NOT NULL)"
	}
	return "CREATE TABLE " + table + " (id BIGINT AUTO_INCREMENT PRIMARY KEY, ref BIGINT NOT NULL, amount INT NOT NULL, created_at DATETIME(3) NOT NULL)"
}

// bizInsert inserts (ref, amount) into the business table.
func bizInsert(db, table string) string {
	if db == "postgres" {
		return "INSERT INTO " + table + " (ref, amount, created_at) VALUES ($1, $2, now())"
	}
	return "INSERT INTO " + table + " (ref, amount, created_at) VALUES (?, ?, NOW(3))"
}
