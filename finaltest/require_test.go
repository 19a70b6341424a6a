package finaltest_test

import (
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/finaltest"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/pgxbus"
)

type order struct {
	ID   int
	Item string
	At   time.Time
}

var placed = order{ID: 42, Item: "tea", At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}

// publishOrders is the code under test: it publishes, in txBus's
// transaction, a typed order with a key and two notes, one with a header.
func publishOrders(t *testing.T, txBus *final.TxBus) {
	t.Helper()
	require.NoError(t, final.PublishValue(t.Context(), txBus, nil, "order.placed", placed, message.WithKey("42")))
	m := message.New("order.noted", []byte("hello"))
	m.Header.Set("source", "web")
	require.NoError(t, txBus.PublishMessage(m))
	require.NoError(t, txBus.Publish("order.noted", []byte("again")))
}

// The assertions pass on what the transaction published, before it
// commits, whatever the criteria.
func TestRequirePublishedTxPasses(t *testing.T) { forEachDatabase(t, testRequirePublishedTxPasses) }

func testRequirePublishedTxPasses(t *testing.T, d database) {
	db, svc := d.open(t)
	bus := finaltest.NewBus(t, svc, db, final.DefaultOptions())
	tx, err := db.BeginTx(t.Context(), nil)
	require.NoError(t, err)
	defer tx.Rollback()
	txBus := bus.WithTx(tx)
	publishOrders(t, txBus)

	got := finaltest.RequirePublishedTx(t, txBus, "order.placed", finaltest.Key("42"), finaltest.Value(nil, placed))
	require.Equal(t, final.MsgpackCodec.Name(), got.ContentType)
	require.Equal(t, "42", got.Key)
	hello := finaltest.RequirePublishedTx(t, txBus, "order.noted", finaltest.Payload([]byte("hello")), finaltest.Header("source", "web"))
	require.Equal(t, "hello", string(hello.Payload))
	notes := finaltest.RequirePublishedCountTx(t, txBus, 2, "order.noted")
	require.Equal(t, "hello", string(notes[0].Payload), "in the order published")
	require.Equal(t, "again", string(notes[1].Payload))
	finaltest.RequirePublishedCountTx(t, txBus, 1, "order.noted", finaltest.Payload([]byte("again")))
	finaltest.RequirePublishedTx(t, txBus, "order.placed", finaltest.Matching("a content type", func(m *message.Message) error {
		if m.ContentType == "" {
			return errors.New("no content type")
		}
		return nil
	}))
	finaltest.RequireNotPublishedTx(t, txBus, "order.cancelled")
	finaltest.RequireNotPublishedTx(t, txBus, "order.placed", finaltest.Key("43"))
	finaltest.RequireNotPublishedTx(t, txBus, "order.placed", finaltest.Value(nil, order{ID: 7}))

	// Rolled back, the messages are gone.
	require.NoError(t, txBus.RollBack())
	tx, err = db.BeginTx(t.Context(), nil)
	require.NoError(t, err)
	defer tx.Rollback()
	finaltest.RequireNotPublishedTx(t, bus.WithTx(tx), "order.placed")
	finaltest.RequirePublishedCountTx(t, bus.WithTx(tx), 0, "order.noted")
}

// On failure, the message says what was wanted and lists what the
// transaction saw, with what differs.
func TestRequirePublishedTxFails(t *testing.T) { forEachDatabase(t, testRequirePublishedTxFails) }

func testRequirePublishedTxFails(t *testing.T, d database) {
	db, svc := d.open(t)
	bus := finaltest.NewBus(t, svc, db, final.DefaultOptions())
	tx, err := db.BeginTx(t.Context(), nil)
	require.NoError(t, err)
	defer tx.Rollback()
	txBus := bus.WithTx(tx)

	msg := failure(t, func(tb finaltest.TB) { finaltest.RequirePublishedTx(tb, txBus, "order.placed") })
	require.Equal(t, "finaltest: no message of topic \"order.placed\" in the transaction\n"+
		"the outbox holds no message as the transaction sees it", msg)

	publishOrders(t, txBus)
	msg = failure(t, func(tb finaltest.TB) { finaltest.RequirePublishedTx(tb, txBus, "order.placed", finaltest.Key("43")) })
	require.Contains(t, msg, `finaltest: no message of topic "order.placed" with key "43" in the transaction`)
	require.Contains(t, msg, "the outbox holds 3 messages as the transaction sees it:")
	require.Contains(t, msg, `1. "order.placed" key "42" content type application/x-msgpack payload (msgpack) map[At:2026-01-02`)
	require.Contains(t, msg, ` ID:42 Item:tea]: key "42", want "43"`)
	require.Contains(t, msg, `: key "42", want "43"`)
	require.Contains(t, msg, `2. "order.noted" header map[source:web] payload "hello"`)
	require.Contains(t, msg, `3. "order.noted" payload "again"`)

	msg = failure(t, func(tb finaltest.TB) {
		finaltest.RequirePublishedTx(tb, txBus, "order.placed", finaltest.Value(nil, order{ID: 7, Item: "tea"}))
	})
	require.Contains(t, msg, `with value {ID:7 Item:tea`)
	require.Contains(t, msg, `: value {ID:42 Item:tea`)
	msg = failure(t, func(tb finaltest.TB) {
		finaltest.RequirePublishedTx(tb, txBus, "order.placed", finaltest.Value(final.JSONCodec, placed))
	})
	require.Contains(t, msg, `does not decode as application/json into finaltest_test.order`)
	msg = failure(t, func(tb finaltest.TB) {
		finaltest.RequirePublishedTx(tb, txBus, "order.noted", finaltest.Header("source", "app"), finaltest.Payload([]byte("hello")))
	})
	require.Contains(t, msg, `with header source="app", payload "hello"`)
	require.Contains(t, msg, `"hello": header source="web", want "app"`)
	require.Contains(t, msg, `"again": no header source, want "app"`)

	msg = failure(t, func(tb finaltest.TB) {
		finaltest.RequirePublishedTx(tb, txBus, "order.noted", finaltest.Matching("x", nil))
	})
	require.Contains(t, msg, `"hello": an empty Match`)
	msg = failure(t, func(tb finaltest.TB) { finaltest.RequirePublishedCountTx(tb, txBus, 1, "order.noted") })
	require.Contains(t, msg, `finaltest: 2 messages of topic "order.noted" in the transaction, want 1`)
	msg = failure(t, func(tb finaltest.TB) {
		finaltest.RequireNotPublishedTx(tb, txBus, "order.noted", finaltest.Payload([]byte("hello")))
	})
	require.Contains(t, msg, `finaltest: 1 message of topic "order.noted" with payload "hello" in the transaction, want none`)
	require.Contains(t, msg, `payload "hello": matches`)
	require.Contains(t, msg, `payload "again": payload "again", want "hello"`)

	// A transaction that has ended cannot be read: that fails too.
	require.NoError(t, txBus.RollBack())
	msg = failure(t, func(tb finaltest.TB) { finaltest.RequireNotPublishedTx(tb, txBus, "order.placed") })
	require.Contains(t, msg, "finaltest: read the outbox: "+final.ErrTxDone.Error())
	msg = failure(t, func(tb finaltest.TB) { finaltest.RequirePublishedTx(tb, nil, "order.placed") })
	require.Equal(t, "finaltest: nil *final.TxBus", msg)
}

// Once committed, the rows go to NewBus's sink and are deleted: the
// assertions are for the transaction before it commits.
func TestNewBusSendsCommittedRows(t *testing.T) { forEachDatabase(t, testNewBusSendsCommittedRows) }

func testNewBusSendsCommittedRows(t *testing.T, d database) {
	db, svc := d.open(t)
	bus := finaltest.NewBus(t, svc, db, final.DefaultOptions())
	tx, err := db.BeginTx(t.Context(), nil)
	require.NoError(t, err)
	require.NoError(t, bus.Transaction(tx, func(txBus *final.TxBus) error {
		publishOrders(t, txBus)
		finaltest.RequirePublishedCountTx(t, txBus, 2, "order.noted")
		return nil
	}))
	testenv.Eventually(t, 10*time.Second, func() bool { return outboxRows(t, db, d, svc) == 0 }, "the outbox of %s empties", svc)
}

func outboxRows(t *testing.T, db *sql.DB, d database, svc string) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM "+d.quote("final_"+svc+"_outbox")).Scan(&n))
	return n
}

// A pgx user's TxBus (pgxbus.WithTx) is read in its pgx.Tx.
func TestRequirePublishedTxOnPgxTx(t *testing.T) {
	pool := testenv.PostgresPool(t)
	db := testenv.Postgres(t)
	svc := testenv.PostgresService(t, db)
	bus := finaltest.NewBus(t, svc, db, final.DefaultOptions())
	tx, err := pool.Begin(t.Context())
	require.NoError(t, err)
	defer tx.Rollback(t.Context())
	txBus := pgxbus.WithTx(t.Context(), bus, tx)
	publishOrders(t, txBus)
	finaltest.RequirePublishedTx(t, txBus, "order.placed", finaltest.Key("42"), finaltest.Value(nil, placed))
	finaltest.RequirePublishedCountTx(t, txBus, 2, "order.noted")
}
