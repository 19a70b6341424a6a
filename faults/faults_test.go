package faults

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// worlds are the databases and brokers the suite runs on, in the report's
// order: every database on RabbitMQ, and MariaDB on NATS (the database
// faults are RabbitMQ's scenarios; on NATS the broker's are what differs).
var worlds = []struct {
	db     *database
	broker *broker
}{{mariaDB, rabbitMQ}, {postgreSQL, rabbitMQ}, {mariaDB, natsBroker}}

// TestFaults runs every scenario under load and prints the summary table.
// Each must end with nothing lost, nothing phantom and an empty outbox, and
// a killed consumer may repeat only what at-least-once allows it.
func TestFaults(t *testing.T) {
	var results []result
	for _, wd := range worlds {
		w := &world{db: wd.db, broker: wd.broker}
		if !slices.ContainsFunc(scenarios, func(sc scenario) bool { return sc.selected() && sc.runsIn(w) }) {
			continue // no set-up for a world where nothing runs
		}
		t.Run(w.name(), func(t *testing.T) {
			results = append(results, runScenarios(t, setupWorld(t, wd.db, wd.broker))...)
		})
	}
	t.Log("\n" + table(results))
}

// runScenarios runs, in w, the scenarios meant for its database and broker.
func runScenarios(t *testing.T, w *world) []result {
	var results []result
	for _, sc := range scenarios {
		if !sc.selected() || !sc.runsIn(w) {
			continue
		}
		maxDups, usualDups := sc.maxDups, sc.usualDups
		if w.broker == natsBroker && sc.natsDups != nil {
			maxDups = sc.natsDups
		}
		if w.broker == natsBroker {
			usualDups = sc.natsUsualDups
		}
		resends := sc.resends && w.broker != natsBroker
		t.Run(sc.name, func(t *testing.T) {
			s := newScene(t, w)
			n, ended := sc.run(t, s)
			r := s.settle(sc.name, n, ended)
			results = append(results, r)
			lost := r.lost
			if lost != 0 && s.knownLoss != "" {
				t.Logf("%s: lost=%d, not final's: %s", sc.name, lost, s.knownLoss)
				lost = 0
			}
			if lost != 0 || r.phantom != 0 || r.rowsLeft != 0 {
				t.Errorf("%s: lost=%d phantom=%d outbox rows left=%d", sc.name, r.lost, r.phantom, r.rowsLeft)
			}
			if maxDups != nil {
				bound, why := maxDups(r.faults), ""
				if resends {
					bound += r.claimedByKilled
					why = fmt.Sprintf(" (%d of them rows the killed relays had claimed)", r.claimedByKilled)
				}
				if r.dups > bound {
					t.Errorf("%s: %d duplicates after %d faults; at most %d may repeat%s", sc.name, r.dups, r.faults, bound, why)
				} else if usualDups != nil && r.dups > usualDups(r.faults)+(bound-maxDups(r.faults)) {
					t.Logf("%s: %d duplicates after %d faults, more than the %d usual (within the %d allowed)", sc.name, r.dups, r.faults, usualDups(r.faults), bound)
				}
			}
			if sc.cutsHandlers && r.redone == 0 {
				t.Errorf("%s: no kill cut off a handler before its record, so redelivery went untested", sc.name)
			}
		})
	}
	return results
}

func table(rs []result) string {
	var b strings.Builder
	b.WriteString("| database | broker | scenario | faults | committed | delivered | lost | phantom | duplicates | dup % | cut off, redone | claimed by killed | outbox left | all delivered after fault |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		pct := 0.0
		if r.committed > 0 {
			pct = 100 * float64(r.dups) / float64(r.committed)
		}
		redone := "–"
		if r.marked {
			redone = fmt.Sprint(r.redone)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %d | %d | %d | %d | %.2f | %s | %d | %d | %s |\n", r.db, r.broker, r.scenario, r.faults, r.committed,
			r.delivered, r.lost, r.phantom, r.dups, pct, redone, r.claimedByKilled, r.rowsLeft, r.recovery.Round(10*time.Millisecond))
	}
	return b.String()
}
