package claim_test

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/finalbus/final/outbox/internal/claim"
)

// fakeRow is a row of fakeTable.
type fakeRow struct {
	id, key int64
	at      int  // when it is available: rows scan in (at, id) order
	ready   bool // available now
	other   bool // held by another transaction: never locked
	mine    bool // leased to the claiming owner
	size    int
}

// fakeTable is a claim.Steps over rows in memory, with the locking rules of
// the SQL stores: Candidates and Lock pass over rows others hold.
type fakeTable struct {
	rows          []fakeRow
	lockedByOther int64     // a row Lock does not get: another claim locked it after KeyRows
	taken         [][]int64 // the ids of each Take
	scans         int       // Candidates calls
	keyRowsLimit  []int     // the limit of each KeyRows call
	fail          string    // the step that fails: "Candidates", "KeyRows", "Lock" or "Take"
}

var errStep = errors.New("step failed")

func (f *fakeTable) cand(r fakeRow) claim.Candidate {
	return claim.Candidate{ID: r.id, Key: r.key, Size: r.size}
}

func (f *fakeTable) Candidates(_ context.Context, limit, _ int, skip []int64, taken []claim.Candidate) ([]claim.Candidate, error) {
	f.scans++
	if f.fail == "Candidates" {
		return nil, errStep
	}
	rows := slices.Clone(f.rows)
	slices.SortFunc(rows, func(a, b fakeRow) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.id, b.id)) })
	var got []claim.Candidate
	for _, r := range rows {
		if len(got) == limit {
			break
		}
		if !r.ready || r.other || slices.Contains(skip, r.key) && r.key != 0 ||
			slices.ContainsFunc(taken, func(c claim.Candidate) bool { return c.ID == r.id }) {
			continue
		}
		got = append(got, f.cand(r))
	}
	return got, nil
}

func (f *fakeTable) KeyRows(_ context.Context, keys, tops, _ []int64, limit int) ([]claim.KeyRow, error) {
	f.keyRowsLimit = append(f.keyRowsLimit, limit)
	if f.fail == "KeyRows" {
		return nil, errStep
	}
	var got []claim.KeyRow
	for i, k := range keys {
		for _, r := range f.rows { // in id order
			if r.key == k && r.id <= tops[i] {
				got = append(got, claim.KeyRow{Candidate: f.cand(r), Ready: r.ready, Mine: r.mine})
			}
		}
	}
	return got[:min(len(got), limit)], nil
}

func (f *fakeTable) Lock(_ context.Context, rows []claim.Candidate) ([]claim.Candidate, error) {
	if f.fail == "Lock" {
		return nil, errStep
	}
	var got []claim.Candidate
	for _, kr := range rows {
		for _, r := range f.rows {
			if r.id == kr.ID && r.ready && !r.other && r.id != f.lockedByOther {
				got = append(got, f.cand(r))
			}
		}
	}
	return got, nil
}

func (f *fakeTable) Take(_ context.Context, rows []claim.Candidate) error {
	if f.fail == "Take" {
		return errStep
	}
	var ids []int64
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	f.taken = append(f.taken, ids)
	return nil
}

func ids(cs []claim.Candidate) []int64 {
	var out []int64
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// The rules of a claim, on rows in memory: a key's rows go in id order
// whichever is available first; a key whose first row another claim holds
// yields nothing, and a next pass looks past it; the owner's own leased
// rows are passed over; the byte budget cuts in id order, the first row
// whatever its size.
func TestRows(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name            string
		rows            []fakeRow
		limit, maxBytes int
		want            []int64
		takes           int
		lockedByOther   int64 // a row another claim locks between KeyRows and Lock
	}{
		{
			name: "a key's rows in id order",
			rows: []fakeRow{
				{id: 1, key: 7, at: 5, ready: true},
				{id: 2, key: 7, at: 1, ready: true},
				{id: 3, at: 2, ready: true},
			},
			limit: 2, want: []int64{1, 3}, takes: 1, // 2 is found first, 1 goes in its place
		},
		{
			name: "a held-back key does not stall the others",
			rows: []fakeRow{
				{id: 1, key: 7, at: 1, ready: true, other: true},
				{id: 2, key: 7, at: 2, ready: true},
				{id: 3, key: 7, at: 3, ready: true},
				{id: 4, key: 8, at: 4, ready: true},
				{id: 5, key: 8, at: 5, ready: true},
			},
			limit: 2, want: []int64{4, 5}, takes: 1, // the first pass finds only key 7's rows, the second looks past them
		},
		{
			name: "the owner's rows in flight are passed over",
			rows: []fakeRow{
				{id: 1, key: 7, at: 9, mine: true},
				{id: 2, key: 7, at: 1, ready: true},
			},
			limit: 5, want: []int64{2}, takes: 1,
		},
		{
			name: "a key behind a row not yet available waits",
			rows: []fakeRow{
				{id: 1, key: 7, at: 9},
				{id: 2, key: 7, at: 1, ready: true},
				{id: 3, at: 2, ready: true},
			},
			limit: 5, want: []int64{3}, takes: 1,
		},
		{
			name: "the budget cuts in id order, the first row whatever its size",
			rows: []fakeRow{
				{id: 1, at: 3, ready: true, size: 100},
				{id: 2, at: 1, ready: true, size: 100},
				{id: 3, at: 2, ready: true, size: 100},
			},
			limit: 5, maxBytes: 150, want: []int64{1, 2}, takes: 1,
		},
		{
			name: "the limit counts the rows of earlier passes",
			rows: []fakeRow{
				{id: 1, key: 7, at: 9},
				{id: 2, key: 7, at: 1, ready: true},
				{id: 3, at: 2, ready: true},
				{id: 4, at: 3, ready: true},
				{id: 5, at: 4, ready: true},
				{id: 6, at: 5, ready: true},
			},
			limit: 3, want: []int64{3, 4, 5}, takes: 2, // pass 1 takes 3 and 4 (key 7 held back), pass 2 one more
		},
		{
			name: "a row locked meanwhile ends its key's run",
			rows: []fakeRow{
				{id: 1, key: 7, at: 1, ready: true},
				{id: 2, key: 7, at: 2, ready: true},
				{id: 3, key: 7, at: 3, ready: true},
			},
			limit: 3, lockedByOther: 2, want: []int64{1}, takes: 1,
		},
		{
			name: "one row larger than the budget",
			rows: []fakeRow{
				{id: 1, at: 1, ready: true, size: 1000},
				{id: 2, at: 2, ready: true, size: 1},
			},
			limit: 5, maxBytes: 10, want: []int64{1}, takes: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeTable{rows: tc.rows, lockedByOther: tc.lockedByOther}
			got, err := claim.Rows(ctx, f, tc.limit, tc.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), tc.want) {
				t.Errorf("took %v, want %v", ids(got), tc.want)
			}
			if len(f.taken) != tc.takes {
				t.Errorf("%d Takes (%v), want %d", len(f.taken), f.taken, tc.takes)
			}
			if all := slices.Concat(f.taken...); !slices.Equal(all, tc.want) && tc.want != nil {
				t.Errorf("the Takes had %v, want %v", all, tc.want)
			}
		})
	}
}

// A claim makes at most 4 passes, however many keys are held back: each
// pass here finds one key whose first row is not yet available, and the
// row without a key that a fifth pass would find stays in the table.
func TestRowsPassCap(t *testing.T) {
	var rows []fakeRow
	for k := int64(1); k <= 4; k++ {
		rows = append(rows,
			fakeRow{id: 2*k - 1, key: k, at: 100},               // not yet available: holds its key back
			fakeRow{id: 2 * k, key: k, at: int(k), ready: true}, // found by pass k
		)
	}
	rows = append(rows, fakeRow{id: 9, at: 50, ready: true})
	f := &fakeTable{rows: rows}
	got, err := claim.Rows(context.Background(), f, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("took %v, want nothing (row 9 is past the fourth pass)", ids(got))
	}
	if f.scans != 4 {
		t.Errorf("%d scans, want 4", f.scans)
	}
}

// A key's rows are read up to 8 per candidate: a key with more of the
// owner's rows in flight than that ahead of its available one yields
// nothing to this claim (it is tried again by the next), rather than being
// read to its end.
func TestRowsOrderScanBound(t *testing.T) {
	var rows []fakeRow
	for id := int64(1); id <= 9; id++ {
		rows = append(rows, fakeRow{id: id, key: 7, at: 100, mine: true})
	}
	rows = append(rows, fakeRow{id: 10, key: 7, at: 1, ready: true})
	f := &fakeTable{rows: rows}
	got, err := claim.Rows(context.Background(), f, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("took %v, want nothing: the key's first 8 rows are in flight", ids(got))
	}
	if len(f.keyRowsLimit) == 0 || f.keyRowsLimit[0] != 8 {
		t.Errorf("KeyRows limits %v, want 8 (one candidate) first", f.keyRowsLimit)
	}
}

// A failing step fails the claim with its error, and nothing is taken
// after it.
func TestRowsStepErrors(t *testing.T) {
	rows := []fakeRow{
		{id: 1, key: 7, at: 1, ready: true},
		{id: 2, at: 2, ready: true},
	}
	for _, step := range []string{"Candidates", "KeyRows", "Lock", "Take"} {
		t.Run(step, func(t *testing.T) {
			f := &fakeTable{rows: rows, fail: step}
			got, err := claim.Rows(context.Background(), f, 5, 0)
			if !errors.Is(err, errStep) {
				t.Fatalf("err %v, want errStep", err)
			}
			if got != nil || len(f.taken) != 0 {
				t.Errorf("returned %v, took %v, want nothing", ids(got), f.taken)
			}
		})
	}
}
