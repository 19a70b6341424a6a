package amqp

import (
	"crypto/tls"
	"time"
)

// Option configures a Provider.
type Option func(*options)

type options struct {
	exchange     string
	dialTimeout  time.Duration
	heartbeat    time.Duration
	reconnectMin time.Duration
	reconnectMax time.Duration
	tls          *tls.Config
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
