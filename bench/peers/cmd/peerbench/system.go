package main

import "context"

// system is a peer under test: one per run, owning the connections and
// whatever it created, which close removes.
type system interface {
	// open prepares a phase on a topic, tables or queue of its own, named
	// after name, with its consumer recording into tr; the forwarder or
	// worker does not run yet.
	open(ctx context.Context, name string, tr *tracker) (phase, error)
	// relayName says what moves the messages: "forwarder" or "worker".
	relayName() string
	// describe states how the peer is configured.
	describe() string
	// settle brings the database to rest after earlier phases.
	settle(ctx context.Context)
	close()
}

// phase is one measured phase of a system.
type phase interface {
	// commit commits one transaction: the business insert and one message
	// per sequence number, each published on its own, as the library's
	// producers do.
	commit(ctx context.Context, seqs []uint64) error
	// startRelay starts the forwarder (watermill) or the worker (river).
	startRelay(ctx context.Context) error
	// close stops the relay and the consumer and removes the phase's
	// tables or queue.
	close()
}

// lossExplainer is a phase that can say what became of its lost messages,
// looked up before its tables are removed.
type lossExplainer interface {
	explainLost(ctx context.Context, lost map[uint64]bool) string
}

// explain is the phase's account of its lost messages, if any.
func explain(ctx context.Context, ph phase, a accounts) string {
	if e, ok := ph.(lossExplainer); ok && a.lost > 0 {
		return e.explainLost(ctx, a.lostSeqs)
	}
	return ""
}
