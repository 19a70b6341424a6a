// Package finaltest helps users of final test their own code, as
// rivertest helps River's: without a broker, a test asserts that its
// transaction published a message, and runs a handler or a middleware
// chain on a message with a ready final.Context.
//
// Asserting publishes. NewBus starts a bus of a service on the test's
// *sql.DB (MariaDB/MySQL, PostgreSQL or SQLite) whose broker is a sink, so
// the code under test can publish. RequirePublishedTx then reads the
// service's outbox inside the test's transaction, before it commits (its
// rows are seen by it alone then), and fails the test, listing what the
// transaction sees, when no message of the topic meets the criteria
// (Payload, Value, Key, Header, Matching):
//
//	bus := finaltest.NewBus(t, "orders", db, final.DefaultOptions())
//	tx, _ := db.Begin()
//	defer tx.Rollback()
//	txBus := bus.WithTx(tx)
//	if err := orders.Place(ctx, txBus, order); err != nil { t.Fatal(err) }
//	finaltest.RequirePublishedTx(t, txBus, "order.placed", finaltest.Key("42"), finaltest.Value(nil, order))
//
// The assertion is for the transaction before it commits: once committed,
// a row goes to the broker and is deleted, at once after a TxBus commit,
// by the relay after Options.OutboxScanAgoTime otherwise. Rows committed by other
// transactions and not yet deleted are seen too, so tests that run in
// parallel use services of their own.
//
// Running handlers. Run runs a chain on a message as the bus runs one
// attempt of a delivery (final.RunChain, the subscriber's own code), and
// RunInTx as an Inbox subscription's, in the test's transaction.
package finaltest
