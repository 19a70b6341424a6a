package finaltest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/finalbus/final"
	"github.com/finalbus/final/finaltest"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox/sqlite"
)

// Order is the value the code under test publishes.
type Order struct {
	ID   int
	Item string
}

// placeOrder is the code under test: it publishes in the caller's
// transaction.
func placeOrder(ctx context.Context, txBus *final.TxBus, o Order) error {
	// … the order's rows, written on the same transaction …
	return final.PublishValue(ctx, txBus, nil, "order.placed", o, message.WithKey(fmt.Sprint(o.ID)))
}

// A test asserts, in its transaction and before it commits, that the code
// under test published a message.
func ExampleRequirePublishedTx() {
	t := newExampleT() // in a test, its *testing.T
	defer t.end()
	db := openSQLite(t) // in a test, its database: MariaDB, PostgreSQL or SQLite

	bus := finaltest.NewBus(t, "orders", db, final.DefaultOptions())
	tx, err := db.Begin()
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer tx.Rollback()
	txBus := bus.WithTx(tx)
	if err := placeOrder(t.Context(), txBus, Order{ID: 42, Item: "tea"}); err != nil {
		t.Fatalf("placeOrder: %v", err)
	}

	m := finaltest.RequirePublishedTx(t, txBus, "order.placed", finaltest.Key("42"), finaltest.Value(nil, Order{ID: 42, Item: "tea"}))
	finaltest.RequireNotPublishedTx(t, txBus, "order.cancelled")
	fmt.Println(m.Topic, m.Key)
	// Output: order.placed 42
}

// When no message matches, the test fails with what the transaction
// published.
func ExampleRequirePublishedTx_failure() {
	t := newExampleT()
	defer t.end()
	db := openSQLite(t)

	bus := finaltest.NewBus(t, "orders", db, final.DefaultOptions())
	tx, err := db.Begin()
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer tx.Rollback()
	txBus := bus.WithTx(tx)
	if err := placeOrder(t.Context(), txBus, Order{ID: 42, Item: "tea"}); err != nil {
		t.Fatalf("placeOrder: %v", err)
	}

	finaltest.RequirePublishedTx(t, txBus, "order.placed", finaltest.Key("43"))
	// Output:
	// finaltest: no message of topic "order.placed" with key "43" in the transaction
	// the outbox holds 1 message as the transaction sees it:
	//   1. "order.placed" key "42" content type application/x-msgpack payload (msgpack) map[ID:42 Item:tea]: key "42", want "43"
}

// A test runs a middleware chain and a typed handler on a message, with
// the Context the bus gives a delivery's first attempt.
func ExampleRun() {
	t := newExampleT()
	defer t.end()

	logTopic := func(c *final.Context) error {
		fmt.Println("middleware:", c.Topic, "attempt", c.Attempt)
		return c.Next()
	}
	ship := final.Typed(nil, func(ctx context.Context, o Order) error {
		if o.Item == "" {
			return final.Permanent(errors.New("nothing to ship"))
		}
		fmt.Println("handler: ship", o.Item)
		return nil
	})

	m := finaltest.ValueMessage(t, nil, "order.placed", Order{ID: 42, Item: "tea"})
	fmt.Println("error:", finaltest.Run(t, m, logTopic, ship))
	m = finaltest.ValueMessage(t, nil, "order.placed", Order{ID: 43})
	err := finaltest.Run(t, m, logTopic, ship)
	fmt.Println("permanent:", errors.Is(err, final.ErrPermanent))
	// Output:
	// middleware: order.placed attempt 1
	// handler: ship tea
	// error: <nil>
	// middleware: order.placed attempt 1
	// permanent: true
}

// A test runs an Inbox handler in its own transaction: the handler's
// writes (Context.Tx) and publishes (Context.TxBus) are seen there, and go
// with the rollback.
func ExampleRunInTx() {
	t := newExampleT()
	defer t.end()
	db := openSQLite(t)
	if _, err := db.Exec(`CREATE TABLE credits (ref TEXT NOT NULL)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	credit := func(c *final.Context) error {
		if _, err := c.Tx().ExecContext(c.Context(), `INSERT INTO credits (ref) VALUES (?)`, string(c.Message.Payload)); err != nil {
			return err
		}
		return c.TxBus().Publish("payment.credited", c.Message.Payload)
	}

	bus := finaltest.NewBus(t, "payments", db, final.DefaultOptions())
	tx, err := db.Begin()
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer tx.Rollback()
	txBus := bus.WithTx(tx)
	if err := finaltest.RunInTx(t, txBus, message.New("payment.received", []byte("p-1")), credit); err != nil {
		t.Fatalf("credit: %v", err)
	}

	var n int
	if err := tx.QueryRow(`SELECT COUNT(*) FROM credits`).Scan(&n); err != nil {
		t.Fatalf("count: %v", err)
	}
	m := finaltest.RequirePublishedTx(t, txBus, "payment.credited")
	fmt.Println(n, "credit;", m.Topic, string(m.Payload))
	// Output: 1 credit; payment.credited p-1
}

// exampleT stands in for the test's *testing.T in the examples: it prints
// failures and runs its cleanups at end.
type exampleT struct{ cleanups []func() }

func newExampleT() *exampleT { return &exampleT{} }

func (t *exampleT) Helper()                           {}
func (t *exampleT) Context() context.Context          { return context.Background() }
func (t *exampleT) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Errorf(format string, args ...any) { fmt.Printf(format+"\n", args...) }
func (t *exampleT) Fatalf(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// end runs the cleanups, last registered first, as testing does.
func (t *exampleT) end() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// openSQLite opens an SQLite file in a new directory, removed at end.
func openSQLite(t *exampleT) *sql.DB {
	dir, err := os.MkdirTemp("", "finaltest-example")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+"?"+sqlite.DSNParams+"&_txlock=immediate")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
