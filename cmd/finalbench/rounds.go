package main

import (
	"slices"
	"time"
)

// alternate runs the limit (raw DB + broker) and the library's commit phase
// in turn, cfg.rounds times, and returns the median of each figure over the
// rounds: the machine's speed drifts between two phases as much as the gap
// between them, and a median over alternating rounds is steadier than one
// pair. The library's duplicates and losses are summed over the rounds.
func (e *benchEnv) alternate(perTx int, say func(string, ...any)) (rawStackResult, libResult, error) {
	c := e.cfg
	rounds := max(1, c.rounds)
	stacks, libs := make([]rawStackResult, rounds), make([]libResult, rounds)
	for i := range rounds {
		say("round %d of %d, %d msg/tx: raw database + raw %s (no outbox), %d producers, %s", i+1, rounds, perTx, c.broker.name(), c.concurrency, e.raw)
		stack, err := e.rawStack(c.concurrency, perTx, c.duration, 0)
		if err != nil {
			return rawStackResult{}, libResult{}, err
		}
		say("  commit %.0f tx/s, end-to-end %.0f tx/s", stack.commitTx, stack.e2eTx)
		say("round %d of %d, %d msg/tx: library commit and end-to-end", i+1, rounds, perTx)
		var pace float64
		if c.paceLibrary > 0 {
			pace = c.paceLibrary * stack.commitTx
			say("  the library paced at %.0f tx/s (-pace-library %.2f)", pace, c.paceLibrary)
		}
		lib, err := e.library(c.concurrency, perTx, c.duration, pace)
		if err != nil {
			return rawStackResult{}, libResult{}, err
		}
		say("  commit %.0f tx/s = %.2f, end-to-end %.0f tx/s = %.2f, %d duplicates", lib.commitTx, ratio(lib.commitTx, stack.commitTx),
			lib.e2eTx, ratio(lib.e2eTx, stack.e2eTx), lib.dups)
		stacks[i], libs[i] = stack, lib
	}
	stack, lib := medianStack(stacks), medianLib(libs)
	if rounds > 1 {
		say("  medians over %d rounds: limit commit %.0f, end-to-end %.0f tx/s; library commit %.0f, end-to-end %.0f tx/s",
			rounds, stack.commitTx, stack.e2eTx, lib.commitTx, lib.e2eTx)
	}
	return stack, lib, nil
}

// alternateDrains runs a raw publish and consume of -backlog messages with
// settings s and the library's backlog drain in turn, cfg.rounds times, and
// returns the drain's median figures (its peak RSS growth the largest, its
// duplicates summed) and the median raw rate consumed: the broker's speed
// drifts within a run by more than the drain's distance to its target, and
// the pairs are measured back to back.
func (e *benchEnv) alternateDrains(s rawSettings, say func(string, ...any)) (drainResult, float64, error) {
	c := e.cfg
	rounds := max(1, c.rounds)
	drains, raws := make([]drainResult, rounds), make([]float64, rounds)
	for i := range rounds {
		say("round %d of %d, drain: raw %s publish and consume of %d messages, %s", i+1, rounds, c.broker.name(), c.backlog, s)
		raw, err := labeled("raw-publish", func() (rawPublishResult, error) { return e.rawPublish(c.backlog, s) })
		if err != nil {
			return drainResult{}, 0, err
		}
		say("  consumed %.0f msg/s", raw.consumed)
		say("round %d of %d, drain: a backlog of %d with the broker unreachable, then drain", i+1, rounds, c.backlog)
		d, err := labeled("drain", func() (drainResult, error) { return e.drain(c.backlog) })
		if err != nil {
			return drainResult{}, 0, err
		}
		say("  connected again %s after the link was restored; from then relayed %.0f msg/s, delivered %.0f msg/s = %.2f, RSS +%.1f MiB, %d duplicates",
			d.reconnect.Round(time.Millisecond), d.relayed, d.delivered, ratio(d.delivered, raw.consumed), d.rssGrowthMiB, d.dups)
		drains[i], raws[i] = d, raw.consumed
	}
	d := drainResult{
		relayed:   median(drains, func(d drainResult) float64 { return d.relayed }),
		delivered: median(drains, func(d drainResult) float64 { return d.delivered }),
		reconnect: time.Duration(median(drains, func(d drainResult) float64 { return float64(d.reconnect) })),
	}
	for _, x := range drains {
		d.rssGrowthMiB = max(d.rssGrowthMiB, x.rssGrowthMiB)
		d.dups += x.dups
	}
	raw := median(raws, func(v float64) float64 { return v })
	if rounds > 1 {
		say("  medians over %d rounds: raw publish and consume %.0f msg/s; drain relayed %.0f, delivered %.0f msg/s = %.2f; largest RSS growth %.1f MiB, %d duplicates",
			rounds, raw, d.relayed, d.delivered, ratio(d.delivered, raw), d.rssGrowthMiB, d.dups)
	}
	return d, raw, nil
}

// median returns the median of the values f picks from xs (the mean of
// the middle two for an even count).
func median[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// medianLatency returns the median of each percentile of the latencies
// lat picks from xs.
func medianLatency[T any](xs []T, lat func(T) latency) latency {
	return latency{
		p50: median(xs, func(x T) float64 { return lat(x).p50 }),
		p99: median(xs, func(x T) float64 { return lat(x).p99 }),
		max: median(xs, func(x T) float64 { return lat(x).max }),
	}
}

func medianStack(xs []rawStackResult) rawStackResult {
	return rawStackResult{
		commitTx: median(xs, func(x rawStackResult) float64 { return x.commitTx }),
		e2eTx:    median(xs, func(x rawStackResult) float64 { return x.e2eTx }),
		loadMsgs: median(xs, func(x rawStackResult) float64 { return x.loadMsgs }),
		lat:      medianLatency(xs, func(x rawStackResult) latency { return x.lat }),
	}
}

func medianLib(xs []libResult) libResult {
	m := libResult{
		commitTx: median(xs, func(x libResult) float64 { return x.commitTx }),
		e2eTx:    median(xs, func(x libResult) float64 { return x.e2eTx }),
		loadMsgs: median(xs, func(x libResult) float64 { return x.loadMsgs }),
		lat:      medianLatency(xs, func(x libResult) latency { return x.lat }),
	}
	for _, x := range xs {
		m.dups += x.dups
		m.lost += x.lost
	}
	return m
}
