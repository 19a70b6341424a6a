// Package final is a transactional outbox for Go services on MariaDB/MySQL,
// PostgreSQL or SQLite, and RabbitMQ. The database is recognised from the
// *sql.DB's driver (Options.Dialect sets it for a wrapped driver).
//
// A service writes its business rows and its outgoing messages in one SQL
// transaction:
//
//	bus := final.New("order_svc", db, amqp.NewProvider(url), final.DefaultOptions())
//	bus.Subscribe("order.created").Middleware(mw1, mw2).Handler(handle)
//	if err := bus.Start(); err != nil { … }
//	defer bus.Shutdown()
//	err := bus.Transaction(tx, func(txBus *final.TxBus) error {
//		// business writes on tx …
//		return txBus.Publish("order.created", payload)
//	})
//
// # How a message travels
//
// TxBus.Publish inserts the message into the service's outbox table
// (final_<service>_outbox) on the caller's transaction. After the commit the
// dispatcher publishes it at once (the fast path) with a publisher confirm
// tracked by amqp091-go; the acker deletes confirmed rows in batches. The
// relay claims rows that stay unconfirmed for OutboxScanAgoTime (the
// process died, the broker was away, the publish was nacked or returned)
// and sends them again, with a backoff per row. On the consuming side each
// service has one durable queue; handlers run behind their middleware,
// failing ones are retried RetryCount times and then dead-lettered.
//
// # Guarantees
//
//   - Atomic: a message published in a transaction is sent if and only if
//     the transaction commits. A rolled-back message never leaves the
//     process.
//   - At-least-once: a committed message is delivered to every subscribed
//     service at least once, whatever fails in between (broker down, link
//     cut, producer killed with SIGKILL, several relays on one table).
//   - Duplicates are possible and rare. They happen when the broker
//     accepted a message but the row was not deleted in time: the process
//     died between the confirm and the batched delete (which waits up to
//     Options.AckLinger to fill its batch), the confirm took
//     longer than about half OutboxScanAgoTime (the fast path starts a
//     publish in the first half), or a consumer died after its handler
//     succeeded but before the ack. Handlers should be idempotent; the
//     message UUID (Context.Message.UUID) identifies duplicates.
//   - Effectively-once with Subscription.Inbox: the chain runs in a
//     transaction that also records the message's topic and UUID, so a
//     duplicate is recognised and acknowledged without calling the handler,
//     and the handler's writes and publishes happen once. The record is per
//     topic: a UUID reused on another topic is another message.
//   - A delivery the broker took back (its connection is gone) is neither
//     retried nor dead-lettered by the instance that held it; a message
//     redelivered more than Options.MaxRedeliveries times, which may crash
//     its consumer, is dead-lettered without calling its handler.
//   - The broker's topology follows the subscriptions: Start removes the
//     bindings and queues the previous start declared and this one does
//     not, moving the messages left in them to the queue that now takes
//     their topic, or to the dead-letter queue. ReplayDeadLetters sends
//     dead letters back to this service only.
//   - Ordered per key with Subscription.Ordered and message.WithKey: the
//     messages of one key are handled one at a time, across instances, in
//     the order their transactions committed one after another, also when
//     publishes fail and are re-sent (the producer holds a key back until
//     its earlier messages are out). Transactions that run at the same
//     time have no order; redelivered duplicates may come late.
//   - Otherwise not ordered: messages are published concurrently, re-sent out of
//     order after failures, and handled by NumSubscriber concurrent
//     workers. Do not rely on the order of any two messages.
//   - WithConfirm(false) opts out of the outbox: such a message is sent
//     after the commit without a row, and may be lost.
//
// Everything above is exercised by the tests against real MariaDB and
// RabbitMQ; see docs/databases.md and docs/faults.md for the numbers.
package final
