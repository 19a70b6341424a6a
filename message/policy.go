package message

import "time"

// Policy says how a message is published.
type Policy struct {
	// Confirm routes the message through the outbox and waits for the
	// broker's confirm before the outbox row is removed. Default true.
	// With false the message is published directly, without the outbox: it
	// may be lost if the broker or the process fails, and it is sent even if
	// the surrounding transaction later rolls back. Use it only for messages
	// that can be lost.
	Confirm bool
	// Durable asks the broker to persist the message (AMQP delivery mode 2).
	// Default true.
	Durable bool
	// TTL is a per-message expiration: the broker discards the message when
	// it has waited this long in a queue. Zero means no expiration.
	TTL time.Duration
	// Delay keeps the message in the outbox until it is due; it is then
	// published by the relay. Zero means publish at once. It needs Confirm.
	Delay time.Duration
	// Key, when set, becomes the message's Key: messages with the same key
	// are handled in order by Ordered subscriptions.
	Key string `msgpack:",omitempty"`
	// ContentType, when set, becomes the message's ContentType (which is
	// what is stored and sent).
	ContentType string `msgpack:"-"`
}

// DefaultPolicy returns the policy every message starts from: confirmed
// through the outbox, durable, no TTL, no delay.
func DefaultPolicy() *Policy {
	return &Policy{Confirm: true, Durable: true}
}

// PolicyOption modifies a Policy.
type PolicyOption func(*Policy)

// WithConfirm sets Policy.Confirm.
func WithConfirm(confirm bool) PolicyOption {
	return func(p *Policy) { p.Confirm = confirm }
}

// WithDurable sets Policy.Durable.
func WithDurable(durable bool) PolicyOption {
	return func(p *Policy) { p.Durable = durable }
}

// WithTTL sets Policy.TTL.
func WithTTL(ttl time.Duration) PolicyOption {
	return func(p *Policy) { p.TTL = ttl }
}

// WithKey sets the message key (Policy.Key, copied to Message.Key).
func WithKey(key string) PolicyOption {
	return func(p *Policy) { p.Key = key }
}

// WithDelay sets Policy.Delay.
func WithDelay(delay time.Duration) PolicyOption {
	return func(p *Policy) { p.Delay = delay }
}

// WithContentType sets the media type of the payload (Policy.ContentType,
// copied to Message.ContentType), sent as the CloudEvents datacontenttype.
func WithContentType(contentType string) PolicyOption {
	return func(p *Policy) { p.ContentType = contentType }
}
