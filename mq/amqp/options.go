package amqp

import "time"

// Option configures a Provider.
type Option func(*options)

type options struct {
	exchange     string
	dialTimeout  time.Duration
	heartbeat    time.Duration
	reconnectMin time.Duration
	reconnectMax time.Duration
}

func defaultOptions() options {
	return options{
		exchange:     "final",
		dialTimeout:  5 * time.Second,
		heartbeat:    5 * time.Second,
		reconnectMin: 100 * time.Millisecond,
		reconnectMax: time.Second,
	}
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

// WithReconnectBackoff sets the first and the largest wait between
// reconnect attempts; the wait doubles in between. Default 100ms and 1s.
func WithReconnectBackoff(min, max time.Duration) Option {
	return func(o *options) { o.reconnectMin, o.reconnectMax = min, max }
}
