package nats

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

// ErrInvalidOption is wrapped by Init's error for an option out of range;
// the error names the option.
var ErrInvalidOption = errors.New("mq/nats: invalid option")

// Option configures a Provider.
type Option func(*options)

type options struct {
	prefix         string
	ackWait        time.Duration
	maxHold        time.Duration
	dialTimeout    time.Duration
	pingInterval   time.Duration
	reconnectMin   time.Duration
	reconnectMax   time.Duration
	replicas       int
	duplicates     time.Duration
	broadcastIdle  time.Duration
	connectOptions []natsgo.Option
}

func defaultOptions() options {
	return options{
		prefix:        "final",
		ackWait:       30 * time.Second,
		maxHold:       30 * time.Minute,
		dialTimeout:   5 * time.Second,
		pingInterval:  5 * time.Second,
		reconnectMin:  100 * time.Millisecond,
		reconnectMax:  time.Second,
		replicas:      1,
		duplicates:    2 * time.Minute,
		broadcastIdle: time.Minute,
	}
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,32}$`)

// validate reports the first option out of range, naming it.
func (o options) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidOption, fmt.Sprintf(format, args...))
	}
	switch {
	case !prefixRE.MatchString(o.prefix):
		return bad("WithPrefix(%q): want 1-32 of [A-Za-z0-9-]", o.prefix)
	case o.ackWait < time.Second:
		return bad("WithAckWait(%s): want at least 1s", o.ackWait)
	case o.maxHold < 0:
		return bad("WithMaxHold(%s): want 0 (no limit) or more", o.maxHold)
	case o.maxHold > 0 && o.maxHold < o.ackWait:
		return bad("WithMaxHold(%s): want 0 or at least the ack wait (%s)", o.maxHold, o.ackWait)
	case o.dialTimeout <= 0:
		return bad("WithDialTimeout(%s): want more than 0", o.dialTimeout)
	case o.pingInterval <= 0:
		return bad("WithPingInterval(%s): want more than 0", o.pingInterval)
	case o.reconnectMin <= 0 || o.reconnectMax < o.reconnectMin:
		return bad("WithReconnectBackoff(%s, %s): want 0 < min <= max", o.reconnectMin, o.reconnectMax)
	case o.replicas < 1 || o.replicas > 5:
		return bad("WithReplicas(%d): want 1-5", o.replicas)
	case o.duplicates < 100*time.Millisecond:
		return bad("WithDuplicateWindow(%s): want at least 100ms", o.duplicates)
	case o.broadcastIdle < time.Second:
		return bad("WithBroadcastInactivity(%s): want at least 1s", o.broadcastIdle)
	}
	return nil
}

// WithPrefix sets the prefix of every subject ("<prefix>.<topic>") and of
// every stream name ("<prefix>_T_...") the provider uses: 1-32 of
// [A-Za-z0-9-]. Services that talk to each other must use the same.
// Default "final".
func WithPrefix(prefix string) Option {
	return func(o *options) { o.prefix = prefix }
}

// WithAckWait sets the AckWait of the consumers the provider creates: how
// long the server waits for the ack of a delivery before it delivers it
// again, maybe to another instance. While its connection lives the provider
// extends the deliveries it holds (JetStream's in-progress ack) up to
// WithMaxHold, so this bounds how soon the deliveries of an instance that
// died come back. At least 1s. Default 30s.
func WithAckWait(d time.Duration) Option {
	return func(o *options) { o.ackWait = d }
}

// WithMaxHold bounds how long the provider extends a delivery that is not
// acknowledged: after that the server delivers it again within the ack
// wait. The bus reads it as the provider's hold limit (mq.HoldLimiter) and
// refuses handler retries that would wait longer. 0 extends without limit
// (a handler that never returns holds its message, and for an Ordered
// topic its shard, until the connection ends). Default 30 min.
func WithMaxHold(d time.Duration) Option {
	return func(o *options) { o.maxHold = d }
}

// WithDialTimeout bounds one connection attempt. Default 5s.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) { o.dialTimeout = d }
}

// WithPingInterval sets how often the client pings the server; two
// unanswered pings end the connection, which detects a silently dead link.
// Default 5s.
func WithPingInterval(d time.Duration) Option {
	return func(o *options) { o.pingInterval = d }
}

// WithReconnectBackoff sets the first and the largest wait between
// reconnect attempts; the wait doubles in between. Default 100ms and 1s.
func WithReconnectBackoff(min, max time.Duration) Option {
	return func(o *options) { o.reconnectMin, o.reconnectMax = min, max }
}

// WithReplicas sets the replicas of the streams the provider creates (1-5;
// a JetStream cluster needs at least that many servers). A stream keeps
// the replicas it was created with unless this changes them. Default 1.
func WithReplicas(n int) Option {
	return func(o *options) { o.replicas = n }
}

// WithDuplicateWindow sets the duplicate window of the topic streams: a
// message published again with the same UUID (Nats-Msg-Id) within it is
// stored once. Default 2 min, the server's default.
func WithDuplicateWindow(d time.Duration) Option {
	return func(o *options) { o.duplicates = d }
}

// WithBroadcastInactivity sets how long the server keeps the broadcast
// consumer of an instance that stopped pulling from it (it crashed, or
// lost its connection) before it deletes it, and with it the messages
// kept for it. An instance back within it receives what was published
// meanwhile. Default 1 min.
func WithBroadcastInactivity(d time.Duration) Option {
	return func(o *options) { o.broadcastIdle = d }
}

// WithNATSOptions adds options of nats.go's Connect: credentials, TLS,
// a name. The provider's own come after them and win: it connects without
// nats.go's reconnect (it replaces a lost connection itself, see the
// package documentation) and without a reconnect buffer, with
// WithDialTimeout and WithPingInterval, and with its own connection
// handlers. Default none.
func WithNATSOptions(opts ...natsgo.Option) Option {
	return func(o *options) { o.connectOptions = append(o.connectOptions, opts...) }
}
