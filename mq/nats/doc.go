// Package nats is the NATS JetStream provider of final, built on nats.go
// and its jetstream package.
//
// # Layout
//
// Subjects, streams and consumers are named after the prefix (WithPrefix,
// default "final"); see names.go for the exact, collision-free mapping.
//
//   - A topic T has a stream of its own, created by every service that
//     subscribes to T, at Init (idempotently: the same configuration each
//     time). It captures "<prefix>.T" (unkeyed messages) and
//     "<prefix>.T.~0" to "<prefix>.T.~15" (keyed messages, by mq.Shard of
//     their key). Its retention is Interest: a message is kept until every
//     consumer of the stream has acknowledged it.
//   - A service S subscribed to T has a durable consumer "S" on T's stream:
//     every service gets every message, the instances of one service
//     compete for them.
//   - An Ordered topic has, instead, a durable consumer per shard ("S_s0"
//     to "S_s15") and one for unkeyed messages ("S_u"), each filtered to its
//     subject and with MaxAckPending 1: one message of a shard is in flight
//     across all the instances of the service, and the shards go in
//     parallel. (Unkeyed messages of an Ordered topic are handled one at a
//     time, in order, too.)
//   - A Broadcast topic has a consumer per instance ("S_b<instance>"), not
//     durable, deleted at Close, and by the server when the instance has
//     not pulled from it for WithBroadcastInactivity (it died, or was cut
//     off longer than that): messages published meanwhile do not reach the
//     instance.
//   - S's dead letters go to the stream "<prefix>_D_S" on the subject
//     "<prefix>.~dlq.S", with the reason and time as headers
//     (HeaderDeadReason, HeaderDeadAt, HeaderDeadTopic, HeaderDeadFrom).
//
// Consumers start with the messages published after they were created
// (DeliverPolicy New), like a queue bound now. A publisher declares
// nothing: a message of a topic that no service subscribes to has no
// stream, and its publish fails with mq.ErrUnroutable (JetStream's "no
// responders"), not lost. Streams and durable consumers outlive the
// provider. When a service restarts with other subscriptions, Reconcile
// (mq.Reconciler) moves what the consumers of its dropped subscriptions
// hold and deletes them, and deletes a topic stream left without any
// consumer, so that its topic is unroutable again.
//
// A new topic stream is created closed, on the subject "<prefix>.~closed.
// <stream>" that no publisher uses, so its topic stays unroutable until its
// first subscriber's consumers exist: a stream open without them would
// confirm a publish and drop it. That subscriber then adds its guard ("S_g",
// a consumer of every subject that never pulls), gives the stream its
// subjects, creates its consumers starting with everything the stream holds
// (DeliverPolicy All: only what came since it opened), and deletes the guard
// (stream.go). A declaration that finds the stream closed, or its own guard,
// resumes there; an abandoned guard goes after 10 minutes.
//
// # Publishing
//
// Publishes are asynchronous and confirmed by JetStream's publish acks
// (nats.go's futures are the mq.Confirmation). The message's UUID is its
// Nats-Msg-Id, so a message sent again within the stream's duplicate window
// (WithDuplicateWindow, 2 min) is stored once. While the provider is not
// connected a publish fails at once with mq.ErrUnavailable: there is no
// client-side buffer. A publish whose connection is lost before its ack
// fails with mq.ErrUnavailable (it may be stored: sending it again is a
// duplicate the window drops).
//
// The provider keeps one connection at a time and replaces it when it is
// lost (WithReconnectBackoff), instead of letting nats.go reconnect the same
// connection: publishes on one connection reach their stream in order, so
// PublishEncodedAfter lets a message follow an unconfirmed one only when
// both go out on the same connection (and the earlier has not failed), and
// refuses with mq.ErrOutOfOrder otherwise, which needs to know which
// connection a publish went out on.
//
// # Consuming and acknowledging
//
// Each consumer is pulled by one loop per instance that holds at most
// Config.Prefetch deliveries unacknowledged (1 for an Ordered topic's).
// Requeue is a nak: the server delivers the message again at once. The
// server delivers a message again also when its ack wait (WithAckWait,
// 30s) passes; while the connection lives the provider extends the
// deliveries it holds ("in progress") up to WithMaxHold (30 min), which it
// reports as its mq.HoldLimiter limit. So the deliveries of an instance that
// died come back after the ack wait, and those of an instance that lives
// stay with it. A delivery is stale (mq.Staler) when its connection is
// lost or its ack wait may have passed; Close naks every delivery not yet
// acknowledged.
//
// DeadLetter publishes the message to the dead-letter stream, waits for the
// ack, and then acknowledges the delivery: a crash in between leaves a
// duplicate, which the dead-letter stream's duplicate window drops.
// ReplayDeadLetters publishes a dead letter again to its topic's stream
// with HeaderReplayTo naming the one consumer that takes it now (its key's
// shard for an Ordered topic, this instance's for a Broadcast one): every
// other consumer of the stream acknowledges it without handing it out, so
// the other services do not get it again (a consumer outside final does
// see it, with that header).
//
// # Wire formats
//
// Config.WireFormat chooses the format of published messages; deliveries
// are read in either. mq.Envelope: the body is the message as encoded by
// message.Marshal, with the header "Content-Type: application/x-msgpack".
// mq.CloudEvents: the NATS protocol binding's binary mode, the body is the
// payload and every attribute (specversion, id, source = the service, type
// = the topic, time, datacontenttype, partitionkey, traceparent and
// tracestate) is a "ce-" header, its value percent-encoded as the binding
// asks; the message header's entries are plain headers, their values as
// strings (numbers and booleans formatted, byte slices in base64), and come
// back as strings. A delivery with a ce-specversion header is a CloudEvent,
// one whose Content-Type is application/x-msgpack or missing is an
// envelope; anything else fails to decode (message.ErrDecode).
//
// # TTL
//
// A message's Policy.TTL travels as the header HeaderTTL (milliseconds) in
// both formats. Consumers acknowledge and drop a message that has been in
// its stream longer than that instead of handing it out: it expires when a
// consumer reaches it, not in the stream. (nats-server 2.11's per-message
// TTL, the Nats-TTL header on a stream with AllowMsgTTL, would free the
// storage sooner; it is not used, so that the provider works on 2.9.)
// Policy.Durable is not used: the streams are file-backed.
//
// # Versions
//
// The provider needs nats-server 2.9 or later with JetStream: it creates
// consumers with the named-consumer API of 2.9 and reads dead letters with
// the next_by_subj message get of 2.9. Nothing in it needs a newer server,
// but 2.9 sometimes sends a message again with a delivery count of 1 after
// it went to a pull request whose puller had gone (fixed in the 2.10 series
// around 2.10.14: nats-io/nats-server#5305, #5338), so Redelivered can be
// false for a redelivery there, and the bus's MaxRedeliveries count it
// late.
// nats-server 2.9.10 also acknowledges publishes while it shuts down on
// SIGTERM that it does not keep: the fault suite's restart under load lost
// 4 to 30 messages per restart in every run (of 2,000 to 9,000 per
// scenario), every one acknowledged in the last milliseconds before the
// connection closed (the stream's sequence then skips them, or reuses
// their numbers); nothing on the client can tell those acks from good
// ones. The same restart loses nothing in lame duck mode
// (nats-server --signal ldm, SIGUSR2), which closes the clients' connections
// before JetStream stops, nor on nats-server 2.15.2 with SIGTERM. So stop
// 2.9 servers in lame duck mode.
// Newer servers would allow more: filtering a consumer by several subjects
// (2.10) would let a replay reach one service without the other consumers
// seeing it, and pinned-client priority groups (2.11) would let an Ordered
// shard keep Prefetch deliveries in flight on one instance rather than one.
package nats
