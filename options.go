package final

import (
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/outbox"
)

// Options configure a Bus. Start from DefaultOptions and change fields or
// chain the With methods; Start rejects out-of-range values with an error
// wrapping ErrInvalidOption that names the field.
type Options struct {
	// PurgeOnStartup deletes the service's outbox rows and empties its
	// queue at Start. Default false. It drops messages: for tests only.
	PurgeOnStartup bool

	// RetryCount is how many times a failing handler is retried before the
	// message is dead-lettered, 0..1000. Default 3 (so 4 calls in all).
	RetryCount int
	// RetryInterval is the first wait between handler retries, up to 1h; it
	// doubles per retry up to 1h, with jitter. The delivery stays
	// unacknowledged meanwhile, so when the provider reports a limit
	// (mq.HoldLimiter: RabbitMQ's consumer_timeout, 30 min by default)
	// Start refuses retries whose waits add up to more than 90% of it, and
	// a delivery whose next wait would end past that is dead-lettered
	// instead. Default 100ms.
	RetryInterval time.Duration

	// MaxRedeliveries bounds how often a message may come back unacknowledged
	// (its consumer crashed, or lost its connection, before the ack): a
	// message redelivered more often is dead-lettered with the reason,
	// without calling its handler, instead of crashing every instance in
	// turn forever. The bus counts the handlings of a redelivered message
	// that never ended in the database (final_redeliveries), which costs a
	// write only for redelivered messages. 0 turns the bound off.
	// Default 10.
	MaxRedeliveries int

	// OutboxScanInterval is how often the relay looks for rows to re-send
	// when the last look found less than a full batch (the first two short
	// batches after a full one are followed by another look at once).
	// Default 1s.
	OutboxScanInterval time.Duration
	// OutboxScanOffset is the relay's batch size: rows claimed per scan.
	// A full batch is followed by the next scan at once. Default 500.
	OutboxScanOffset int64
	// OutboxScanAgoTime is how long a freshly committed row is left to the
	// fast path (publish right after commit) before the relay treats it as
	// unconfirmed and re-sends it. It counts from the row's insert. The
	// fast path starts a row's publish only in the first half of it, and
	// leaves the other half for the confirm and the delete to land before a
	// relay may claim the row, so the messages of a transaction left open
	// longer than half this go by the relay instead. Default 5s.
	OutboxScanAgoTime time.Duration
	// OutboxLease is how long a row claimed by one relay is hidden from
	// the others. It must exceed PublishTimeout. Default 15s.
	OutboxLease time.Duration
	// OutboxHeldClaims is how many of the relay's claims may hold their
	// rows by an open transaction at once, on a store that can
	// (outbox.Holder: PostgreSQL, MariaDB/MySQL). A held claim writes no
	// lease: its rows stay locked while their messages are published, and
	// the same transaction deletes the confirmed ones, which doubles the
	// rate at which the store alone claims and deletes rows on PostgreSQL
	// and triples it on MariaDB (BenchmarkClaimHeld in outbox/postgres and
	// outbox/mysql). Its rows are free again when the database sees the
	// connection closed, or after OutboxLease without a statement (a hung
	// relay; on MariaDB/MySQL rounded up to whole seconds). Each takes one connection of the database's pool while
	// its batch is being published: size the pool for OutboxHeldClaims +
	// NumAcker + the application's own (on a pool whose size it can see,
	// the relay holds no more than leave NumAcker + 1 connections free).
	// 0 leases every claim (OutboxLease), as the stores that cannot hold
	// do. Default 2.
	OutboxHeldClaims int
	// OutboxRetryBase and OutboxRetryMax bound the backoff of a row whose
	// publish failed (nacked, returned, timed out, broker down): the wait
	// doubles per failure from the base up to the max. Defaults 100ms, 5s.
	OutboxRetryBase time.Duration
	OutboxRetryMax  time.Duration

	// NumSubscriber is the number of concurrent handler workers. Default 8.
	NumSubscriber int
	// Prefetch bounds the unacknowledged deliveries of each consumer of
	// this instance (with RabbitMQ, basic.qos per consumer): the service
	// queue of the plain subscriptions has one consumer, the broadcast
	// queue one, and each Ordered topic one per shard queue (16). So an
	// instance may hold Prefetch times its consumers in deliveries, in
	// memory: 256 × 17 for plain subscriptions and one ordered topic, 1 MiB
	// of 256-byte messages, 272 MiB of 64 KiB ones; lower it for large
	// messages. A limit shared by the channel (basic.qos global) would
	// bound the instance, but quorum queues refuse it and RabbitMQ
	// deprecates it (4.3 rejects it by default).
	//
	// A delivery may wait behind Prefetch / NumSubscriber handler runs
	// before its own starts (for an Ordered topic, behind up to Prefetch-1
	// of its key): RabbitMQ takes back a delivery held past its consumer
	// timeout (30 min) and closes the channel. Start checks the retry waits
	// against it, but not how long handlers run: with handlers that take
	// more than a few seconds, lower Prefetch (256 / 8 workers × 50 s
	// handlers is 27 min).
	//
	// Default 0 means 256 (DefaultPrefetch; Spring AMQP's default is 250,
	// for the same reason), or 4 × NumSubscriber when that is more: with
	// 32, the consumer waited for its acks to reach the broker before it
	// got more (docs/performance.md). Left at 0, it is halved as often as
	// needed, down to 4 × NumSubscriber (the default before), for the retry
	// waits to fit the broker's consumer timeout (see RetryInterval), so
	// options that started with the old default still start.
	Prefetch int
	// NumAcker is the number of goroutines deleting confirmed rows in
	// batches. Default 2.
	NumAcker int
	// AckBatchSize caps the rows removed by one DELETE. Default 500.
	AckBatchSize int
	// AckLinger is how long an acker waits, from the first confirmed row
	// of a batch, for more to fill its DELETE before it writes it; a full
	// batch (AckBatchSize) goes at once, and Shutdown writes what is held.
	// One statement for many rows costs the database far less than one per
	// few (on MariaDB with 8 producers, 100ms lifted the commit rate by
	// about a third; see docs/performance.md). Delivery does not wait for
	// it: the rows are already confirmed. The cost is that they stay in the
	// table up to this long after their confirm, so a crash in that time
	// sends them again when the relay finds them: duplicates, never a
	// loss. 0: write what is queued at once, one statement per wake-up. The
	// acker waits at most half OutboxScanAgoTime, so that the relay seldom
	// finds confirmed rows still there and sends them again (it can when a
	// confirm itself took most of that half). While an acker
	// lingers, failed publishes wait for the other acker (NumAcker) or for
	// the batch to be written before they are recorded. Default 100ms.
	AckLinger time.Duration

	// PublishTimeout bounds the wait for one broker confirm; an
	// unconfirmed publish is then retried. Default 5s.
	PublishTimeout time.Duration
	// MaxUnconfirmed bounds the publishes of this instance waiting for the
	// broker's confirm; the next publish waits for a slot. A lost
	// connection fails them all, and those the broker had already taken are
	// sent again: duplicates. So it bounds the duplicates one lost
	// connection causes, and it caps the publish rate at MaxUnconfirmed /
	// confirm latency (256 / 10 ms = 25,600 msg/s). Raise it for a distant
	// broker. Default 256: a backlog drained from PostgreSQL to the local
	// RabbitMQ 19 % faster than with 128 (docs/performance.md).
	MaxUnconfirmed int
	// DispatchQueueSize bounds the committed rows waiting for the fast
	// path (a row is a message, or a pack of them: see PackMessages). A
	// committing caller never waits for it: when it is full, the bus
	// remembers the ids of the rows that did not fit (up to 16 ×
	// DispatchQueueSize, at least 65,536, about 40 bytes each) and reads
	// them back from the outbox in batches, oldest first, once there is
	// room for a batch, within the first half of their OutboxScanAgoTime
	// window; beyond that bound, or later, the relay sends them. Messages
	// with a key that do not fit (among them those committed while a batch
	// waits for room) are left to the relay, which keeps their order. It also
	// bounds the keyed messages parked behind an unsent earlier message of
	// their key. Default 8192.
	DispatchQueueSize int
	// DispatchQueueBytes bounds the same in bytes (of messages as stored):
	// the committed messages waiting for the fast path and the keyed ones
	// parked together hold at most this much plus one message; a message
	// that does not fit is left to the relay. It also bounds the relay's
	// claims: a claim stops taking rows once their bytes reach the room
	// the dispatcher has left (it takes one row whatever its size), so a
	// claimed batch goes into the dispatcher at once and is sent within its
	// lease, however large its messages. So the outbox messages an instance
	// holds in memory stay under about twice this value, whatever the
	// backlog. Default 64 MiB: the count bound still governs messages under
	// 8 KiB (8192 × 8 KiB), 64 messages of the largest default payload
	// (1 MiB) keep the publisher busy, and 64 MiB is sent well within a
	// claim's window (OutboxLease − PublishTimeout, 10s) on any link faster
	// than 7 MiB/s.
	DispatchQueueBytes int
	// MaxPayloadBytes caps a message payload. Default 1 MiB.
	MaxPayloadBytes int
	// PackMessages lets TxBus.PublishMessages write a run of messages of
	// one topic that are neither keyed nor delayed as one outbox row (a
	// pack of up to 64 messages, cut once they reach 1 MiB; see
	// outbox.Pack), so the database inserts and deletes one row, not one
	// per message: at ten messages a transaction about 60 % less of what
	// the outbox costs MariaDB (docs/performance.md). The broker still
	// gets each message on its own. A pack is deleted once every message
	// in it is confirmed. When one is not, and others were, or the first
	// was refused for itself (too large for the broker, say), the pack is
	// split: each message the broker did not confirm gets a row of its
	// own and the pack is deleted, so the confirmed ones are not sent
	// again and a message that keeps failing holds up none of the others.
	// When none was confirmed because the broker is down, slow, nacked
	// them all (as a lost connection does) or has no queue for the topic,
	// the pack is sent whole again, as every pack of that moment fails.
	// An instance of a build before packs (commit c7b733f) cannot
	// send one and leaves it in the table for those that can: turn this
	// off while such instances may still relay (a rolling deploy from one,
	// or a rollback to one). Default true.
	PackMessages bool
	// ShutdownTimeout bounds Shutdown: how long it waits for in-flight
	// handlers, confirms and PublishAsync callbacks before it cancels them
	// and returns (the context given to ShutdownContext can shorten it);
	// Shutdown returns at most about 1.5s after it. Default 10s.
	ShutdownTimeout time.Duration

	// InboxRetention is how long the inbox remembers a handled message
	// (subscriptions with Inbox). Start refuses a value shorter than the
	// redelivery horizon the other options allow. Default 24h.
	InboxRetention time.Duration

	// Dialect is the SQL database the outbox lives in (outbox/mysql.Dialect
	// for MariaDB and MySQL). Default nil: recognised from the *sql.DB's
	// driver (github.com/go-sql-driver/mysql); set it for a driver the bus
	// does not recognise, such as one wrapped for tracing (otelsql), or
	// Start fails naming the driver.
	Dialect outbox.Dialect

	// Beginner begins the transaction each Inbox delivery is handled in.
	// Default nil: BeginTx on the bus's *sql.DB, whose *sql.Tx Context.Tx
	// returns. pgxbus.New sets one that begins a pgx.Tx on the pgxpool
	// (pgxbus.Tx returns it). It must begin transactions of the bus's
	// database. If it implements outbox.BusOwned, Shutdown calls its
	// CloseWithBus once the bus has stopped (pgxbus's closes the *sql.DB it
	// opened on the pool); nothing else of it is closed.
	Beginner outbox.Beginner

	// WireFormat is the format messages take on the broker. Default
	// mq.Envelope, the ancestor library's msgpack envelope, which only
	// final reads; mq.CloudEvents sends CloudEvents 1.0 in binary content
	// mode, which any language reads with its broker client (see
	// docs/wire-format.md). Consumers read both whatever this says.
	// The default is the envelope so that upgrading a service never sends
	// a format its peers, still on an earlier version, cannot read:
	// upgrade every consumer first, then switch the producers.
	WireFormat mq.WireFormat

	// Logger receives the bus's logs. Default nil: discard. Nothing is
	// logged per message above Debug.
	Logger *slog.Logger
}

// DefaultOptions returns the defaults documented on each field.
func DefaultOptions() Options {
	return Options{
		RetryCount:         3,
		RetryInterval:      100 * time.Millisecond,
		MaxRedeliveries:    10,
		OutboxScanInterval: time.Second,
		OutboxScanOffset:   500,
		OutboxScanAgoTime:  5 * time.Second,
		OutboxLease:        15 * time.Second,
		OutboxHeldClaims:   2,
		OutboxRetryBase:    100 * time.Millisecond,
		OutboxRetryMax:     5 * time.Second,
		NumSubscriber:      8,
		NumAcker:           2,
		AckBatchSize:       500,
		AckLinger:          100 * time.Millisecond,
		PublishTimeout:     5 * time.Second,
		MaxUnconfirmed:     256,
		DispatchQueueSize:  8192,
		DispatchQueueBytes: 64 << 20,
		MaxPayloadBytes:    1 << 20,
		PackMessages:       true,
		ShutdownTimeout:    10 * time.Second,
		InboxRetention:     24 * time.Hour,
	}
}

// WithPurgeOnStartup sets PurgeOnStartup.
func (o Options) WithPurgeOnStartup(v bool) Options { o.PurgeOnStartup = v; return o }

// WithRetryCount sets RetryCount.
func (o Options) WithRetryCount(v int) Options { o.RetryCount = v; return o }

// WithRetryInterval sets RetryInterval.
func (o Options) WithRetryInterval(v time.Duration) Options { o.RetryInterval = v; return o }

// WithMaxRedeliveries sets MaxRedeliveries.
func (o Options) WithMaxRedeliveries(v int) Options { o.MaxRedeliveries = v; return o }

// WithOutboxScanInterval sets OutboxScanInterval.
func (o Options) WithOutboxScanInterval(v time.Duration) Options { o.OutboxScanInterval = v; return o }

// WithOutboxScanOffset sets OutboxScanOffset.
func (o Options) WithOutboxScanOffset(v int64) Options { o.OutboxScanOffset = v; return o }

// WithOutboxScanAgoTime sets OutboxScanAgoTime.
func (o Options) WithOutboxScanAgoTime(v time.Duration) Options { o.OutboxScanAgoTime = v; return o }

// WithOutboxLease sets OutboxLease.
func (o Options) WithOutboxLease(v time.Duration) Options { o.OutboxLease = v; return o }

// WithOutboxHeldClaims sets OutboxHeldClaims.
func (o Options) WithOutboxHeldClaims(v int) Options { o.OutboxHeldClaims = v; return o }

// WithOutboxRetry sets OutboxRetryBase and OutboxRetryMax.
func (o Options) WithOutboxRetry(base, max time.Duration) Options {
	o.OutboxRetryBase, o.OutboxRetryMax = base, max
	return o
}

// WithNumSubscriber sets NumSubscriber.
func (o Options) WithNumSubscriber(v int) Options { o.NumSubscriber = v; return o }

// WithPrefetch sets Prefetch.
func (o Options) WithPrefetch(v int) Options { o.Prefetch = v; return o }

// WithNumAcker sets NumAcker.
func (o Options) WithNumAcker(v int) Options { o.NumAcker = v; return o }

// WithAckBatchSize sets AckBatchSize.
func (o Options) WithAckBatchSize(v int) Options { o.AckBatchSize = v; return o }

// WithPublishTimeout sets PublishTimeout.
func (o Options) WithPublishTimeout(v time.Duration) Options { o.PublishTimeout = v; return o }

// WithAckLinger sets AckLinger.
func (o Options) WithAckLinger(v time.Duration) Options { o.AckLinger = v; return o }

// WithMaxUnconfirmed sets MaxUnconfirmed.
func (o Options) WithMaxUnconfirmed(v int) Options { o.MaxUnconfirmed = v; return o }

// WithDispatchQueueSize sets DispatchQueueSize.
func (o Options) WithDispatchQueueSize(v int) Options { o.DispatchQueueSize = v; return o }

// WithDispatchQueueBytes sets DispatchQueueBytes.
func (o Options) WithDispatchQueueBytes(v int) Options { o.DispatchQueueBytes = v; return o }

// WithMaxPayloadBytes sets MaxPayloadBytes.
func (o Options) WithMaxPayloadBytes(v int) Options { o.MaxPayloadBytes = v; return o }

// WithPackMessages sets PackMessages.
func (o Options) WithPackMessages(v bool) Options { o.PackMessages = v; return o }

// WithShutdownTimeout sets ShutdownTimeout.
func (o Options) WithShutdownTimeout(v time.Duration) Options { o.ShutdownTimeout = v; return o }

// WithInboxRetention sets InboxRetention.
func (o Options) WithInboxRetention(v time.Duration) Options { o.InboxRetention = v; return o }

// WithDialect sets Dialect.
func (o Options) WithDialect(d outbox.Dialect) Options { o.Dialect = d; return o }

// WithBeginner sets Beginner.
func (o Options) WithBeginner(bg outbox.Beginner) Options { o.Beginner = bg; return o }

// WithWireFormat sets WireFormat.
func (o Options) WithWireFormat(f mq.WireFormat) Options { o.WireFormat = f; return o }

// WithLogger sets Logger.
func (o Options) WithLogger(l *slog.Logger) Options { o.Logger = l; return o }

// redeliveryHorizon bounds how long after a message was first handled a
// copy of it can still arrive, while the database is reachable: its outbox
// row may be re-sent until the fast-path window, a lease, a confirm wait and
// a backoff have passed, and a delivery may be retried or redelivered.
func (o Options) redeliveryHorizon() time.Duration {
	return o.OutboxScanAgoTime + o.OutboxLease + o.PublishTimeout + o.OutboxRetryMax + o.retryWaits() + o.ShutdownTimeout
}

// maxRetryWait caps one wait between handler retries.
const maxRetryWait = time.Hour

// retryWait is the wait before handler retry number i (0-based), before
// jitter: RetryInterval doubled per retry, capped at maxRetryWait, never
// overflowing.
func (o Options) retryWait(i int) time.Duration {
	return mq.Backoff(o.RetryInterval, maxRetryWait, i)
}

// retryWaits is the longest a delivery waits between its handler calls in
// all: the sum of every retry's wait. validate bounds RetryCount and
// RetryInterval, so it cannot overflow.
func (o Options) retryWaits() time.Duration {
	var sum time.Duration
	for i := 0; i < o.RetryCount; i++ {
		sum += o.retryWait(i)
	}
	return sum
}

// holdBudget is how long the bus may hold a delivery unacknowledged under
// the provider's limit (0: none): 90% of it, leaving the last handler call
// and the ack time to finish.
func holdBudget(limit time.Duration) time.Duration { return limit / 10 * 9 }

// holdWorstCase bounds how long a delivery stays unacknowledged, counting
// only retry waits, when every message fails: before its first attempt it
// may wait among the prefetched deliveries while the workers retry others
// in full (Prefetch / NumSubscriber rounds of them for a competing queue;
// for an ordered one, up to Prefetch-1 earlier messages of its own key,
// one after another), and then it is retried in full itself.
func (o Options) holdWorstCase(ordered bool) time.Duration {
	rounds := (o.Prefetch+o.NumSubscriber-1)/o.NumSubscriber + 1
	if ordered {
		rounds = max(o.Prefetch, 1)
	}
	w := o.retryWaits()
	if w > 0 && int64(rounds) > math.MaxInt64/int64(w) {
		return math.MaxInt64
	}
	return time.Duration(rounds) * w
}

// DefaultPrefetch is the Prefetch a bus uses when Options.Prefetch is 0,
// unless the broker's consumer timeout needs less.
const DefaultPrefetch = 256

// prefetchFloor is the least Prefetch the default goes down to: the
// default before DefaultPrefetch.
func (o Options) prefetchFloor() int { return 4 * o.NumSubscriber }

// defaultPrefetch is the Prefetch of a bus whose options left it 0:
// DefaultPrefetch, halved while the retry waits would not fit the
// provider's hold limit, down to prefetchFloor.
func (o Options) defaultPrefetch(limit time.Duration, ordered bool) int {
	p := max(DefaultPrefetch, o.prefetchFloor())
	for p > o.prefetchFloor() {
		o.Prefetch = p
		if o.validateHold(limit, ordered) == nil {
			return p
		}
		p = max(p/2, o.prefetchFloor())
	}
	return p
}

// validateHold checks the retry waits against the provider's hold limit.
func (o Options) validateHold(limit time.Duration, ordered bool) error {
	if limit <= 0 {
		return nil
	}
	if w, budget := o.holdWorstCase(ordered), holdBudget(limit); w > budget {
		return fmt.Errorf("%w: RetryCount = %d with RetryInterval = %s waits up to %s between handler calls per message; "+
			"with Prefetch = %d per consumer and NumSubscriber = %d a delivery may stay unacknowledged %s in all when every "+
			"message fails, more than %s (90%% of the broker's limit on an unacknowledged delivery, %s): the broker would "+
			"take the deliveries back and close the channel; lower RetryCount, RetryInterval or Prefetch, or raise the "+
			"broker's consumer timeout and tell the provider",
			ErrInvalidOption, o.RetryCount, o.RetryInterval, o.retryWaits(), o.Prefetch, o.NumSubscriber, w, budget, limit)
	}
	return nil
}

// validateInbox checks InboxRetention, for a bus with Inbox subscriptions.
func (o Options) validateInbox() error {
	if h := o.redeliveryHorizon(); o.InboxRetention < h {
		return fmt.Errorf("%w: InboxRetention = %s is shorter than the redelivery horizon %s these options allow "+
			"(OutboxScanAgoTime + OutboxLease + PublishTimeout + OutboxRetryMax + handler retries + ShutdownTimeout): "+
			"a duplicate could arrive after its inbox record is pruned", ErrInvalidOption, o.InboxRetention, h)
	}
	return nil
}

// validate checks every field and fills derived defaults.
func (o *Options) validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: %s = %v, want %s", ErrInvalidOption, field, v, want)
	}
	switch {
	case o.RetryCount < 0 || o.RetryCount > 1000:
		return bad("RetryCount", o.RetryCount, "0..1000")
	case o.RetryInterval < 0 || o.RetryInterval > maxRetryWait:
		return bad("RetryInterval", o.RetryInterval, "0..1h")
	case o.MaxRedeliveries < 0:
		return bad("MaxRedeliveries", o.MaxRedeliveries, ">= 0")
	case o.OutboxScanInterval <= 0:
		return bad("OutboxScanInterval", o.OutboxScanInterval, "> 0")
	case o.OutboxScanOffset <= 0 || o.OutboxScanOffset > 10000:
		return bad("OutboxScanOffset", o.OutboxScanOffset, "1..10000")
	case o.OutboxScanAgoTime <= 0:
		return bad("OutboxScanAgoTime", o.OutboxScanAgoTime, "> 0")
	case o.PublishTimeout <= 0:
		return bad("PublishTimeout", o.PublishTimeout, "> 0")
	case o.OutboxLease <= o.PublishTimeout:
		return bad("OutboxLease", o.OutboxLease, "> PublishTimeout ("+o.PublishTimeout.String()+")")
	case o.OutboxHeldClaims < 0 || o.OutboxHeldClaims > 64:
		return bad("OutboxHeldClaims", o.OutboxHeldClaims, "0..64")
	case o.OutboxRetryBase <= 0:
		return bad("OutboxRetryBase", o.OutboxRetryBase, "> 0")
	case o.OutboxRetryMax < o.OutboxRetryBase:
		return bad("OutboxRetryMax", o.OutboxRetryMax, ">= OutboxRetryBase")
	case o.NumSubscriber <= 0:
		return bad("NumSubscriber", o.NumSubscriber, "> 0")
	case o.Prefetch < 0 || o.Prefetch > math.MaxUint16:
		return bad("Prefetch", o.Prefetch, "0..65535")
	case o.NumAcker <= 0:
		return bad("NumAcker", o.NumAcker, "> 0")
	case o.AckBatchSize <= 0 || o.AckBatchSize > 10000:
		return bad("AckBatchSize", o.AckBatchSize, "1..10000")
	case o.AckLinger < 0:
		return bad("AckLinger", o.AckLinger, ">= 0")
	case o.MaxUnconfirmed <= 0:
		return bad("MaxUnconfirmed", o.MaxUnconfirmed, "> 0")
	case o.DispatchQueueSize <= 0:
		return bad("DispatchQueueSize", o.DispatchQueueSize, "> 0")
	case o.DispatchQueueBytes <= 0:
		return bad("DispatchQueueBytes", o.DispatchQueueBytes, "> 0")
	case o.MaxPayloadBytes <= 0 || o.MaxPayloadBytes > 64<<20:
		return bad("MaxPayloadBytes", o.MaxPayloadBytes, "1..64 MiB")
	case o.ShutdownTimeout <= 0:
		return bad("ShutdownTimeout", o.ShutdownTimeout, "> 0")
	case o.WireFormat != mq.Envelope && o.WireFormat != mq.CloudEvents:
		return bad("WireFormat", o.WireFormat, "mq.Envelope or mq.CloudEvents")
	}
	if o.Prefetch == 0 {
		o.Prefetch = o.prefetchFloor()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
