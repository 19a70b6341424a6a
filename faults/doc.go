// Package faults is final's fault-injection suite. It breaks things on
// purpose under sustained load, against the real MariaDB, PostgreSQL,
// RabbitMQ and NATS JetStream, and compares the business table (the truth) with what
// subscribers received: committed, delivered, lost, phantom (delivered but
// rolled back), duplicates, outbox rows left, and the time from the end of
// the fault until everything committed was delivered. Half the producing
// goroutines commit one message a transaction, the other half three,
// which the bus writes as one outbox row (a pack), so the faults fall on
// packs part way through their publishes too.
//
// The short form runs with the rest of the tests (go test ./...). The full
// form repeats each fault more often and also stops the RabbitMQ
// application, so it needs the broker to itself:
//
//	go test -count=1 -v ./faults -faults.full -timeout 30m
//
// The suite works in its own RabbitMQ vhost (final_faults) and as its own
// MariaDB user and PostgreSQL role (final_faults), which it creates, so
// that closing or killing connections (KILL, pg_terminate_backend)
// touches nothing but its own. Every scenario runs on MariaDB; the
// producer kill, the link cut, the killed database connections and the
// three relays run on PostgreSQL too (TestFaults/MariaDB/...,
// TestFaults/PostgreSQL/...).
//
// On NATS (TestFaults/MariaDB+NATS/...) the suite names its subjects and
// streams with the prefix "faults" and deletes each scene's streams, and
// runs the producer kill, the link cut, the consumer kills and two
// nats-server restarts. Its consumers' ack wait is 2s, so the deliveries of
// a killed consumer, or of one whose link was cut, come back within the
// run. A message's UUID is its Nats-Msg-Id, so the publishes a producer
// kill or a lost link makes the bus send again are dropped by the
// stream's duplicate window: a producer kill may repeat nothing there, and
// a link cut only what the consumer's lost acks repeat. The restarts stop a
// nats-server of the suite's own (on a free port, with its own store
// directory; testenv.StartNATSServer), never the shared one, which the
// other packages' tests use at the same time: one with SIGTERM, one in
// lame duck mode. nats-server 2.9 loses publishes it acknowledged while it
// shut down on SIGTERM: on 2.9 the suite reports those as lost and says
// why, instead of failing (on any other version they fail it).
//
// The resource-alarm scenario raises
// RabbitMQ's memory alarm, which blocks every publisher of the node, so it
// runs on a second RabbitMQ node of the tests' own
// (FINAL_TEST_ALARM_AMQP_URL, default amqp://guest:guest@127.0.0.1:5673/,
// node FINAL_TEST_ALARM_NODE, default final-alarm@localhost), which .ci/run
// starts.
package faults
