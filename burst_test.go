package final_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
)

// A burst larger than the dispatch queue is sent right after its commit,
// read back from the table as the queue empties, not by the relay: here the
// relay could take no row before an hour.
func TestBurstBeyondTheDispatchQueueIsNotLeftToTheRelay(t *testing.T) {
	forEachDB(t, testBurstBeyondTheDispatchQueue)
}

func testBurstBeyondTheDispatchQueue(t *testing.T, e *env) {
	const n = 300
	topic := e.svc + ".burst"
	rec := newRecorder()
	opt := testOptions(t).WithDispatchQueueSize(2).WithOutboxScanAgoTime(time.Hour)
	b := e.start(e.svc, e.url, opt, func(b *final.Bus) { b.Subscribe(topic).Handler(rec.handle) })

	tx, err := e.db.Begin()
	require.NoError(t, err)
	var refs []string
	require.NoError(t, b.Transaction(tx, func(txBus *final.TxBus) error {
		for i := range n {
			ref := fmt.Sprintf("burst-%d", i)
			refs = append(refs, ref)
			if err := txBus.Publish(topic, []byte(ref)); err != nil {
				return err
			}
		}
		return nil
	}))
	rec.waitAll(t, refs, 60*time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool { return e.outboxRows() == 0 }, "outbox empty")
	got := rec.tally(refs)
	t.Logf("burst of %d beyond a 2-row dispatch queue on %s: %s", n, e.name, got)
	require.Zero(t, got.lost)
	require.Zero(t, got.duplicates)
}
