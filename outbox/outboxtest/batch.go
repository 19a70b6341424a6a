package outboxtest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
)

// batchRows returns n rows of topic.batch whose payloads say who wrote
// them ("<writer>/<i>"): every fifth one due in an hour, and every third
// of the others keyed (a keyed row due later would hold back its key's
// next rows).
func batchRows(t *testing.T, writer string, n int) []outbox.Row {
	t.Helper()
	rows := make([]outbox.Row, n)
	for i := range rows {
		delayed, key := i%5 == 4, ""
		if !delayed && i%3 == 0 {
			key = fmt.Sprintf("%s-k%d", writer, i%2)
		}
		m := message.New("topic.batch", fmt.Appendf(nil, "%s/%d", writer, i), message.WithKey(key))
		body, err := message.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		rows[i] = outbox.Row{Body: body, OrderKey: outbox.OrderKey(m.Topic, key)}
		if delayed {
			rows[i].AvailableIn = time.Hour
		}
	}
	return rows
}

// testInsertBatch checks a BatchInserter: each id returned is the row at
// its place (same body, key and schedule), in batches of many sizes, of
// large rows, and written at once by several transactions, and a batch
// follows its transaction.
func testInsertBatch(t *testing.T, h Harness) {
	s, db := h.New(t)
	b, ok := s.(outbox.BatchInserter)
	if !ok {
		t.Skipf("%T is not an outbox.BatchInserter", s)
	}

	tx := h.begin(t, db)
	if _, err := b.InsertBatch(ctx, tx, batchRows(t, "rolled-back", 3)); err != nil {
		t.Fatalf("InsertBatch: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := length(t, s); n != 0 {
		t.Fatalf("rows after a rolled-back batch = %d, want 0", n)
	}

	// Sizes around the stores' statement bounds, then writers at once, so
	// that their ids interleave where the database allows it.
	want := map[int64]outbox.Row{}
	var mu sync.Mutex
	write := func(rows []outbox.Row) error {
		n := len(rows)
		tx, err := h.beginE(db)
		if err != nil {
			return err
		}
		ids, err := b.InsertBatch(ctx, tx, rows)
		if err != nil {
			_ = tx.Rollback(ctx)
			return fmt.Errorf("InsertBatch of %d rows: %w", n, err)
		}
		if len(ids) != n {
			_ = tx.Rollback(ctx)
			return fmt.Errorf("InsertBatch of %d rows returned %d ids", n, len(ids))
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for i, id := range ids {
			if _, dup := want[id]; dup {
				return fmt.Errorf("id %d returned twice", id)
			}
			want[id] = rows[i]
		}
		return nil
	}
	for _, n := range []int{1, 2, 63, 64, 65, 130} {
		if err := write(batchRows(t, fmt.Sprintf("alone-%d", n), n)); err != nil {
			t.Fatal(err)
		}
	}
	// Large rows: the stores cut a batch by bytes too.
	big := batchRows(t, "big", 5)
	for i := range big {
		m := message.New("topic.batch", append(fmt.Appendf(nil, "big/%d/", i), make([]byte, 400<<10)...))
		body, err := message.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		big[i].Body = body
	}
	if err := write(big); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		var batches [][]outbox.Row
		for round := range 5 {
			batches = append(batches, batchRows(t, fmt.Sprintf("w%d-r%d", w, round), 10+w))
		}
		wg.Go(func() {
			for _, rows := range batches {
				if err := write(rows); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	lone := batchRows(t, "no-tx", 4)
	ids, err := b.InsertBatch(ctx, nil, lone)
	if err != nil {
		t.Fatalf("InsertBatch without a transaction: %v", err)
	}
	for i, r := range lone {
		want[ids[i]] = r
	}

	if n := length(t, s); n != len(want) {
		t.Fatalf("rows = %d, want %d", n, len(want))
	}
	// Every row due now comes back under the id returned for it.
	got := map[int64]outbox.Record{}
	for {
		recs, err := s.Claim(ctx, "a", 500, 0, time.Hour)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			got[r.ID] = r
		}
	}
	due := 0
	for id, row := range want {
		rec, claimed := got[id]
		if row.AvailableIn > 0 {
			if claimed {
				t.Fatalf("row %d, due in an hour, was claimed", id)
			}
			continue
		}
		due++
		if !claimed {
			t.Fatalf("row %d, due now, was not claimed", id)
		}
		if string(rec.Body) != string(row.Body) || rec.OrderKey != row.OrderKey {
			t.Fatalf("row %d holds %.20q (key %d), want %.20q (key %d): the ids are not in the order of the rows",
				id, payload(t, rec.Body), rec.OrderKey, payload(t, row.Body), row.OrderKey)
		}
	}
	if len(got) != due {
		t.Fatalf("claimed %d rows, want %d", len(got), due)
	}
}

func payload(t *testing.T, body []byte) string {
	t.Helper()
	m, err := message.Unmarshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return string(m.Payload)
}
