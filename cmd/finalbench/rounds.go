package main

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// alternate runs the limit (raw DB + broker) and the library's commit phase
// in turn, cfg.rounds times, and returns the pair of the median round (see
// medianPair): the machine's speed drifts between two phases as much as the
// gap between them, and the median of pairs measured back to back is
// steadier than one pair.
func (e *benchEnv) alternate(perTx int, say func(string, ...any)) (rawStackResult, libResult, error) {
	c := e.cfg
	rounds := max(1, c.rounds)
	stacks, libs := make([]rawStackResult, rounds), make([]libResult, rounds)
	for i := range rounds {
		say("round %d of %d, %d msg/tx: raw database + raw %s (no outbox), %d producers, %s", i+1, rounds, perTx, c.broker.name(), c.concurrency, e.raw)
		stack, err := labeled(fmt.Sprintf("limit-%d", perTx), func() (rawStackResult, error) {
			return e.rawStack(c.concurrency, perTx, c.duration, 0)
		})
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
		lib, err := labeled(fmt.Sprintf("library-%d", perTx), func() (libResult, error) {
			return e.library(c.concurrency, perTx, c.duration, pace, c.flightWatch(false))
		})
		if err != nil {
			return rawStackResult{}, libResult{}, err
		}
		say("  commit %.0f tx/s = %.2f, end-to-end %.0f tx/s = %.2f, %d duplicates; of the messages, %s read back from the table, %s relayed",
			lib.commitTx, ratio(lib.commitTx, stack.commitTx), lib.e2eTx, ratio(lib.e2eTx, stack.e2eTx), lib.dups,
			share(lib.readBack, lib.msgs), share(lib.relayed, lib.msgs))
		if err := e.writeLatencyLogs(fmt.Sprintf("rounds-%dmsg-%d", perTx, i+1), stack.tr, lib.tr); err != nil {
			return rawStackResult{}, libResult{}, err
		}
		stacks[i], libs[i] = stack, lib
	}
	stack, lib, m := medianPair(stacks, libs)
	if rounds > 1 {
		say("  the median round by end to end, %d of %d: limit commit %.0f, end-to-end %.0f tx/s; library commit %.0f = %.2f, end-to-end %.0f = %.2f; over all rounds %d duplicates, %d lost",
			m+1, rounds, stack.commitTx, stack.e2eTx, lib.commitTx, ratio(lib.commitTx, stack.commitTx), lib.e2eTx, ratio(lib.e2eTx, stack.e2eTx), lib.dups, lib.lost)
	}
	return stack, lib, nil
}

// medianPair returns the limit's and the library's figures of the round
// whose end-to-end ratio is the median (medianRound), and that round. The
// library's duplicates and losses are summed over every round, so that one
// round's loss shows. (Medians taken figure by figure would pair the
// library of one round with the limit of another.)
func medianPair(stacks []rawStackResult, libs []libResult) (rawStackResult, libResult, int) {
	m := medianRound(len(libs), func(i int) float64 { return ratio(libs[i].e2eTx, stacks[i].e2eTx) })
	lib := libs[m]
	lib.dups, lib.lost = 0, 0
	for _, x := range libs {
		lib.dups += x.dups
		lib.lost += x.lost
	}
	return stacks[m], lib, m
}

// alternateDrains runs a raw publish and consume of -backlog messages with
// settings s and the library's backlog drain in turn, cfg.rounds times: the
// broker's speed drifts within a run by more than the drain's distance to
// its target, and each pair is measured back to back. It returns the pair
// of the median round, by the drain's ratio to the raw rate consumed (the
// lower middle one for an even count), with the largest RSS growth and the
// duplicates summed over the rounds. (Medians taken figure by figure would
// break the pairs: rounds of 0.71, 0.91 and 0.72 gave 0.82.)
func (e *benchEnv) alternateDrains(s rawSettings, say func(string, ...any)) (drainResult, rawPublishResult, error) {
	c := e.cfg
	rounds := max(1, c.rounds)
	drains, raws := make([]drainResult, rounds), make([]rawPublishResult, rounds)
	for i := range rounds {
		say("round %d of %d, drain: raw %s publish and consume of %d messages, %s", i+1, rounds, c.broker.name(), c.backlog, s)
		raw, err := labeled("raw-publish", func() (rawPublishResult, error) { return e.rawPublish(c.backlog, s) })
		if err != nil {
			return drainResult{}, rawPublishResult{}, err
		}
		say("  confirmed %.0f msg/s, consumed %.0f msg/s", raw.confirmed, raw.consumed)
		say("round %d of %d, drain: a backlog of %d with the broker unreachable, then drain", i+1, rounds, c.backlog)
		d, err := labeled("drain", func() (drainResult, error) { return e.drain(c.backlog) })
		if err != nil {
			return drainResult{}, rawPublishResult{}, err
		}
		say("  connected again %s after the link was restored; from then relayed %.0f msg/s, delivered %.0f msg/s = %.2f of raw consumed, RSS +%.1f MiB, %d duplicates",
			d.reconnect.Round(time.Millisecond), d.relayed, d.delivered, ratio(d.delivered, raw.consumed), d.rssGrowthMiB, d.dups)
		drains[i], raws[i] = d, raw
	}
	m := medianRound(rounds, func(i int) float64 { return ratio(drains[i].delivered, raws[i].consumed) })
	d := drains[m]
	d.rssGrowthMiB, d.dups = 0, 0
	for _, x := range drains {
		d.rssGrowthMiB = max(d.rssGrowthMiB, x.rssGrowthMiB)
		d.dups += x.dups
	}
	if rounds > 1 {
		say("  the median round, %d of %d: raw consumed %.0f msg/s, drain delivered %.0f msg/s = %.2f; over all rounds largest RSS growth %.1f MiB, %d duplicates",
			m+1, rounds, raws[m].consumed, d.delivered, ratio(d.delivered, raws[m].consumed), d.rssGrowthMiB, d.dups)
	}
	return d, raws[m], nil
}

// medianRound returns the round, of n, whose figure f is the median: the
// lower middle one for an even n.
func medianRound(n int, f func(round int) float64) int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(f(a), f(b)) })
	return order[(n-1)/2]
}
