package outbox_test

import (
	"slices"
	"testing"

	"github.com/finalbus/final/outbox"
)

func TestBatchesBoundRowsAndBytes(t *testing.T) {
	sized := func(sizes ...int) []outbox.Row {
		rows := make([]outbox.Row, len(sizes))
		for i, n := range sizes {
			rows[i].Body = make([]byte, n)
		}
		return rows
	}
	cuts := func(rows []outbox.Row, maxRows, maxBytes int) []int {
		var got []int
		for b := range outbox.Batches(rows, maxRows, maxBytes) {
			got = append(got, len(b))
		}
		return got
	}
	for _, c := range []struct {
		name             string
		rows             []outbox.Row
		maxRows, maxByte int
		want             []int
	}{
		{"none", nil, 4, 100, nil},
		{"by rows", sized(1, 1, 1, 1, 1, 1, 1, 1, 1), 4, 100, []int{4, 4, 1}},
		{"by bytes, one body past the bound", sized(40, 40, 40, 40, 40), 10, 100, []int{3, 2}},
		{"a body larger than the bound goes alone", sized(500, 1, 1), 10, 100, []int{1, 2}},
		{"maxRows below one is one", sized(1, 1), 0, 100, []int{1, 1}},
	} {
		if got := cuts(c.rows, c.maxRows, c.maxByte); !slices.Equal(got, c.want) {
			t.Errorf("%s: cut into %v, want %v", c.name, got, c.want)
		}
	}
}

func TestPairIDs(t *testing.T) {
	got, err := outbox.PairIDs([]int64{9, 3, 7}, 3)
	if err != nil || !slices.Equal(got, []int64{3, 7, 9}) {
		t.Fatalf("PairIDs = %v, %v; want [3 7 9]", got, err)
	}
	if _, err := outbox.PairIDs([]int64{3, 7}, 3); err == nil {
		t.Fatal("two ids for three rows: no error")
	}
	if _, err := outbox.PairIDs([]int64{3, 3, 7}, 3); err == nil {
		t.Fatal("an id twice: no error")
	}
}
