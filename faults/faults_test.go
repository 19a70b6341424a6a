package faults

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestFaults runs every scenario under load and prints the summary table.
// Each must end with nothing lost, nothing phantom and an empty outbox, and
// a killed consumer may repeat only what at-least-once allows it.
func TestFaults(t *testing.T) {
	var results []result
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) {
			results = append(results, runScenarios(t, setupWorld(t, d))...)
		})
	}
	t.Log("\n" + table(results))
}

// runScenarios runs, in w, the scenarios meant for its database.
func runScenarios(t *testing.T, w *world) []result {
	var results []result
	for _, sc := range scenarios {
		if sc.full && !*full || !strings.Contains(sc.name, *only) || w.db != mariaDB && !sc.postgres {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			s := newScene(t, w)
			n, ended := sc.run(t, s)
			r := s.settle(sc.name, n, ended)
			results = append(results, r)
			if r.lost != 0 || r.phantom != 0 || r.rowsLeft != 0 {
				t.Errorf("%s: lost=%d phantom=%d outbox rows left=%d", sc.name, r.lost, r.phantom, r.rowsLeft)
			}
			if sc.maxDups != nil && r.dups > sc.maxDups(r.faults) {
				t.Errorf("%s: %d duplicates after %d faults; at most %d may repeat", sc.name, r.dups, r.faults, sc.maxDups(r.faults))
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
	b.WriteString("| database | scenario | faults | committed | delivered | lost | phantom | duplicates | dup % | cut off, redone | outbox left | all delivered after fault |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		pct := 0.0
		if r.committed > 0 {
			pct = 100 * float64(r.dups) / float64(r.committed)
		}
		redone := "–"
		if r.marked {
			redone = fmt.Sprint(r.redone)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d | %.2f | %s | %d | %s |\n", r.database, r.scenario, r.faults, r.committed,
			r.delivered, r.lost, r.phantom, r.dups, pct, redone, r.rowsLeft, r.recovery.Round(10*time.Millisecond))
	}
	return b.String()
}
