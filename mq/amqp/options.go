package amqp

import (
	"crypto/tls"
	"time"
)

// Option configures a Provider.
type Option func(*options)

type options struct {
	exchange        string
	consumerTimeout time.Duration
	quorum          bool
	dialTimeout     time.Duration
	heartbeat       time.Duration
	reconnectMin    time.Duration
	reconnectMax    time.Duration
	tls             *tls.Config
	dialer          Dialer
	ackBatch        int
}

func defaultOptions() options {
	return options{
		exchange:        "final",
		consumerTimeout: 30 * time.Minute,
		dialTimeout:     5 * time.Second,
		heartbeat:       5 * time.Second,
		reconnectMin:    100 * time.Millisecond,
		reconnectMax:    time.Second,
		ackBatch:        DefaultAckBatch,
	}
}

// DefaultAckBatch is WithAckBatch's default.
const DefaultAckBatch = 64

// WithAckBatch lets up to n acknowledgements of handled deliveries wait
// (about 0.5 ms, more while an earlier write is under way) to be written
// to the broker together, one multiple ack
// for a run of them: RabbitMQ spends much of a consumer's CPU on ack
// frames, and the consumer runs about 1.4 times as fast with them batched
// (docs/performance.md); a backlog drained from MariaDB 11 % faster with 64
// than with 16. An Ack returns before its frame is written only while
// fewer than n others wait; the rest wait for the write.
//
// The cost is in duplicates: a consumer that dies (SIGKILL, a cut link)
// loses the acks still waiting, so up to n messages it had handled come
// again, beyond the NumSubscriber it was handling (n is per consuming
// channel, and a Provider consumes on one). A consumer that stops writes
// them first (waiting at most a second for a dying link). An Ordered topic's acks, and a
// dead-lettered delivery's, are written before Ack returns whatever n is.
// Default 64 (DefaultAckBatch); 0 writes each ack before Ack returns
// (those settled at the same moment may still share a frame); a negative
// n is taken as 0.
func WithAckBatch(n int) Option {
	return func(o *options) { o.ackBatch = max(n, 0) }
}

// WithExchange sets the durable direct exchange messages are published to.
// Default "final". Every service that talks to another must use the same.
func WithExchange(name string) Option {
	return func(o *options) { o.exchange = name }
}

// WithDialTimeout bounds one connection attempt. Default 5s.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) { o.dialTimeout = d }
}

// WithHeartbeat sets the AMQP heartbeat, which detects a silently dead
// connection. Default 5s.
func WithHeartbeat(d time.Duration) Option {
	return func(o *options) { o.heartbeat = d }
}

// WithConsumerTimeout tells the provider the broker's consumer_timeout: how
// long RabbitMQ lets a delivery stay unacknowledged before it closes the
// channel (and with it every consumer of the instance). The bus refuses
// handler retry options whose waits add up to more, and dead-letters a
// delivery rather than hold it that long. Zero or less: the broker has
// no consumer timeout. Default 30 min, RabbitMQ's
// default since 3.8.15; set it to the broker's value if you changed it.
func WithConsumerTimeout(d time.Duration) Option {
	return func(o *options) { o.consumerTimeout = d }
}

// WithQuorumQueues declares the service queue, the shard queues of Ordered
// topics and the dead-letter queue as quorum queues: replicated across a
// RabbitMQ cluster's nodes with Raft, so they survive the loss of a node.
// Single-active-consumer
// works on them as on classic queues. The costs: every message is written
// to a majority of nodes before it is confirmed (more latency, less
// throughput than a classic queue on one node), messages are always
// persistent, and per-message TTL needs RabbitMQ 3.10 or newer. Broadcast
// queues stay classic: they are exclusive to one connection. On RabbitMQ
// 4.x quorum queues drop a message returned more than 20 times unless a
// policy gives them a dead-letter target.
//
// A queue's type is fixed when it is created: a service whose queues
// already exist as classic queues fails at Init with the broker's
// PRECONDITION_FAILED until they are deleted (drain them first, or start
// under a new service name). Default false: classic queues.
func WithQuorumQueues() Option {
	return func(o *options) { o.quorum = true }
}

// WithReconnectBackoff sets the first and the largest wait between
// reconnect attempts; the wait doubles in between. Default 100ms and 1s.
func WithReconnectBackoff(min, max time.Duration) Option {
	return func(o *options) { o.reconnectMin, o.reconnectMax = min, max }
}

// WithTLS sets the TLS configuration of the connections to the broker: a
// private CA in RootCAs, a client certificate in Certificates (to log in
// with the certificate instead of a password, RabbitMQ's EXTERNAL
// mechanism, add auth_mechanism=external to the URL). The URL must
// be amqps://; an amqp:// URL with WithTLS is refused at Init rather than
// sending the credentials in the clear. The configuration is cloned for
// each connection; ServerName defaults to the URL's host.
//
// Default nil: an amqps:// URL verifies the broker against the system's
// roots, or against the URL's cacertfile, certfile and keyfile query
// parameters (which WithTLS overrides); an amqp:// URL is plain TCP.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls = cfg }
}
