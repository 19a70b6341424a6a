// Package mq is the contract between the bus and a message broker.
//
// A provider publishes messages with broker confirms and delivers the
// messages of one service's queue. It owns its connection: it reconnects on
// its own and re-declares what it needs. Implementations live in
// subpackages (mq/amqp); mq/mqtest is the conformance suite every
// implementation, the in-memory test double included, must pass.
package mq

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/finalbus/final/message"
)

// Errors a provider reports. Implementations wrap them with %w.
var (
	// ErrUnavailable: the broker cannot be reached right now. The caller
	// keeps the message and tries again later.
	ErrUnavailable = errors.New("mq: broker unavailable")
	// ErrNacked: the broker refused the message (basic.nack), or the
	// channel closed before it confirmed.
	ErrNacked = errors.New("mq: publish not confirmed")
	// ErrUnroutable: the broker returned the message because no queue is
	// bound to its topic.
	ErrUnroutable = errors.New("mq: message unroutable")
	// ErrClosed: the provider was closed.
	ErrClosed = errors.New("mq: provider closed")
	// ErrOutOfOrder: a publish was refused because the broker could route
	// it ahead of an earlier publish that is not confirmed (see
	// OrderedPublisher). Nothing was sent.
	ErrOutOfOrder = errors.New("mq: publish could overtake an unconfirmed one")
	// ErrNotReplayable: a dead letter cannot be replayed (it cannot be
	// decoded, or the service no longer subscribes to its topic). It stays
	// in the dead-letter queue; the ones behind it are replayed.
	ErrNotReplayable = errors.New("mq: dead letter cannot be replayed")
)

// Config is what the bus tells a provider at Init.
type Config struct {
	// Service names the consuming service: its queue and dead-letter queue
	// are derived from it. It is validated by the bus.
	Service string
	// Topics are the topics the service subscribes to; the service queue is
	// bound to each, and its instances compete for the messages.
	Topics []string
	// Broadcast are topics every instance receives in full, through a
	// queue of its own that lives as long as its connection: messages
	// published while an instance is disconnected do not reach it.
	Broadcast []string
	// Ordered are topics whose messages with the same key are delivered
	// in order to one consumer at a time across the service's instances
	// (see OrderShards); keys are spread over shards handled in parallel.
	Ordered []string
	// Prefetch bounds the unacknowledged deliveries in flight.
	Prefetch int
	// Purge empties the service queue at Init.
	Purge bool
	// WireFormat is the format published messages take; deliveries are
	// read in either format.
	WireFormat WireFormat
	// Logger receives the provider's logs; never nil.
	Logger *slog.Logger
}

// Subscriptions returns the topics of c by kind.
func (c Config) Subscriptions() Subscriptions {
	return Subscriptions{Topics: c.Topics, Broadcast: c.Broadcast, Ordered: c.Ordered}
}

// Subscriptions are the topics a service consumes, by kind, as in Config.
type Subscriptions struct {
	Topics    []string
	Broadcast []string
	Ordered   []string
}

// Empty reports whether s has no topic.
func (s Subscriptions) Empty() bool { return len(s.Topics)+len(s.Broadcast)+len(s.Ordered) == 0 }

// Without returns s less the topics t has in the same kind.
func (s Subscriptions) Without(t Subscriptions) Subscriptions {
	minus := func(a, b []string) []string {
		var out []string
		for _, x := range a {
			if !slices.Contains(b, x) {
				out = append(out, x)
			}
		}
		return out
	}
	return Subscriptions{
		Topics:    minus(s.Topics, t.Topics),
		Broadcast: minus(s.Broadcast, t.Broadcast),
		Ordered:   minus(s.Ordered, t.Ordered),
	}
}

// Reconciler is an optional capability of a provider whose broker keeps
// what a service declared (bindings, queues) beyond the service's life,
// where it cannot be listed (AMQP 0-9-1 cannot list bindings). After Init,
// the bus calls Reconcile with what the service declared when it last
// started, as the bus recorded it, so that a service restarted with other
// subscriptions receives nothing for the topics it dropped, and leaves no
// queue that no consumer reads:
//
//   - a topic no longer in the Config's Topics is unbound from the service
//     queue; a topic no longer Ordered loses its shard queues; the service
//     queue goes when the Config has no Topics;
//   - messages left in a queue that goes are moved, not lost: to the queue
//     that now takes their topic, or, if the service no longer subscribes
//     to it, to the service's dead-letter queue with the reason.
//
// Reconcile returns what it could not remove yet (a queue another
// instance still consumes, during a rolling deploy), for the bus to keep
// on record and hand to the next start's Reconcile. It is idempotent.
// Without this capability the bus records nothing and the provider only
// ever adds.
type Reconciler interface {
	Reconcile(ctx context.Context, prev Subscriptions) (left Subscriptions, err error)
}

// IProvider is a message broker as the bus sees it. All methods are safe for
// concurrent use.
type IProvider interface {
	// Init connects, declares the topology for cfg and starts keeping the
	// connection alive. It fails (wrapping ErrUnavailable) when the broker
	// cannot be reached.
	Init(ctx context.Context, cfg Config) error
	// Publish hands msg to the broker and returns at once with a
	// Confirmation to wait on. It returns ErrUnavailable without blocking
	// when the broker is not connected.
	Publish(ctx context.Context, msg *message.Message) (Confirmation, error)
	// Consume starts delivering the service queue's messages, and the
	// instance's broadcast messages. The channel survives reconnects; it is
	// closed after ctx is cancelled or the provider is closed. Once ctx is
	// cancelled no delivery is handed out any more, while those handed out
	// can still be acknowledged; Close returns the rest to their queues.
	Consume(ctx context.Context) (<-chan Delivery, error)
	// Close stops the provider and waits for its goroutines. Unacknowledged
	// deliveries go back to the queue. Close is idempotent.
	Close() error
}

// EncodedPublisher is an optional capability of a provider: publishing a
// message already encoded with message.Marshal. The bus uses it for outbox
// rows, whose stored bytes are the Envelope format's body, so a message is
// encoded once and the broker receives exactly what the transaction
// stored. msg supplies the topic, UUID and policy; in the CloudEvents
// format, whose body is the payload, msg is whole too (header, payload,
// content type, time), and body is still the envelope, so that a provider
// that knows only the envelope sends that.
type EncodedPublisher interface {
	PublishEncoded(ctx context.Context, msg *message.Message, body []byte) (Confirmation, error)
}

// OrderedPublisher is an optional capability of a provider: publishing a
// message that the broker must not route ahead of an earlier one. The bus
// uses it to pipeline the messages of one key without waiting for each
// confirm. PublishEncodedAfter publishes body (as PublishEncoded) only if
// the broker will route it after prev: prev is confirmed already, or went
// out on the same channel, which the broker processes in order. Otherwise,
// typically because the connection prev went out on was lost, it returns
// ErrOutOfOrder without publishing. A nil prev imposes no condition.
//
// Without this capability the bus sends a keyed message only when no
// earlier message of its key awaits a confirm, and holds it back until
// then otherwise: one message in flight per key.
type OrderedPublisher interface {
	PublishEncodedAfter(ctx context.Context, prev Confirmation, msg *message.Message, body []byte) (Confirmation, error)
}

// ReadyNotifier is an optional capability of a provider: Ready returns a
// channel that is closed while the broker is connected (a fresh, open one
// while it is not). The relay uses it to resume the moment a lost
// connection is back instead of polling.
type ReadyNotifier interface {
	Ready() <-chan struct{}
}

// HoldLimiter is an optional capability of a provider: HoldLimit is how
// long the broker lets a delivery stay unacknowledged before it takes it
// back (RabbitMQ's consumer_timeout closes the channel, and with it every
// consumer on it); 0 means no limit. The bus refuses handler retry options
// whose waits add up to more, and dead-letters a delivery rather than hold
// it past the limit. Without this capability the bus assumes no limit.
type HoldLimiter interface {
	HoldLimit() time.Duration
}

// DeadLetter is a message in a service's dead-letter queue.
type DeadLetter struct {
	Body []byte // as published
	// Message is the decoded message, in either wire format; nil when it
	// cannot be decoded, and Err (wrapping message.ErrDecode) says why.
	Message *message.Message
	Err     error
	Topic   string    // the topic it was published under, if known
	Reason  string    // why it was dead-lettered
	At      time.Time // when, if known
}

// DeadLetterQueue is an optional capability of a provider: reading and
// replaying the service's dead letters.
type DeadLetterQueue interface {
	// PeekDeadLetters returns up to limit dead letters, oldest first,
	// leaving them in the queue.
	PeekDeadLetters(ctx context.Context, limit int) ([]DeadLetter, error)
	// ReplayDeadLetters looks at up to limit dead letters, oldest first,
	// and sends each back to this service only, never to the other
	// services subscribed to its topic (they handled it already): to the
	// queue of the service's subscription of its topic (for an Ordered
	// one, its key's shard; for a Broadcast one, this instance's queue).
	// Each leaves the dead-letter queue only once the broker confirmed its
	// new copy. It returns how many it replayed. A dead letter that cannot
	// be replayed (undecodable, or its topic no longer subscribed) stays
	// in the dead-letter queue and does not hold back the ones behind it;
	// the error then wraps ErrNotReplayable and says which and why.
	ReplayDeadLetters(ctx context.Context, limit int) (int, error)
}

// Confirmation is the broker's pending verdict on one publish.
type Confirmation interface {
	// Wait blocks until the broker confirms (nil), refuses (ErrNacked),
	// returns the message (ErrUnroutable), or ctx ends (ctx.Err()).
	Wait(ctx context.Context) error
}

// Delivery is one message received from the service queue.
type Delivery interface {
	// Message decodes the delivery, in either wire format. An error
	// (wrapping message.ErrDecode) means it can never be handled and
	// should be dead-lettered.
	Message() (*message.Message, error)
	// Redelivered reports whether the broker delivered it before.
	Redelivered() bool
	// Ack removes the delivery from the queue.
	Ack() error
	// Requeue gives the delivery back to the queue for another try.
	Requeue() error
	// DeadLetter moves the delivery to the service's dead-letter queue,
	// recording reason, and acknowledges it once the dead-letter queue has
	// confirmed. On error the delivery is left unacknowledged.
	DeadLetter(ctx context.Context, reason string) error
}

// Staler is an optional capability of a Delivery: Stale reports that the
// connection it came on is gone. The broker then delivers it again, so the
// bus does not handle it; for an ordered subscription handling it would
// also run it after its own redelivery's successors.
type Staler interface {
	Stale() bool
}

// Backoff returns the wait before retry number attempt (0-based): base
// doubled per attempt, capped at max.
func Backoff(base, max time.Duration, attempt int) time.Duration {
	if base <= 0 {
		return 0
	}
	d := base
	for i := 0; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}
