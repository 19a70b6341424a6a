package main

import "testing"

func TestMedian(t *testing.T) {
	id := func(x float64) float64 { return x }
	for _, c := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{9, 1, 5}, 5},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.xs, id); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

// The medians of the rounds are taken figure by figure; the library's
// duplicates and losses are summed, so that one round's loss shows.
func TestMedianLibSumsLossesAndDuplicates(t *testing.T) {
	m := medianLib([]libResult{
		{commitTx: 100, e2eTx: 90, dups: 1},
		{commitTx: 300, e2eTx: 70, lost: 2},
		{commitTx: 200, e2eTx: 80},
	})
	if m.commitTx != 200 || m.e2eTx != 80 || m.dups != 1 || m.lost != 2 {
		t.Fatalf("medianLib = %+v, want commit 200, end to end 80, 1 duplicate, 2 lost", m)
	}
}
