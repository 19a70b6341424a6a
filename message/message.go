// Package message defines the message that travels from a producer's outbox
// to a subscriber's handler, and the per-message policy options.
package message

import (
	"time"

	"github.com/google/uuid"
)

// Message is one unit of publication. Its exported fields are encoded with
// msgpack by field name, so rows written by the ancestor library (which used
// the same names) still decode.
type Message struct {
	// UUID identifies the message end to end. It is a time-ordered UUIDv7
	// unless the publisher set it.
	UUID string
	// Topic is the routing key the message is published under.
	Topic string
	// Key is an optional partitioning key; it travels with the message.
	Key string `msgpack:",omitempty"`
	// Header carries application metadata end to end.
	Header Header
	// Payload is the application body; the library never inspects it.
	Payload []byte
	// Policy says how the message is published. It stays with the
	// producer: it is not sent in the CloudEvents wire format, and a
	// received message has the default policy.
	Policy *Policy
	// ContentType is the media type of Payload ("application/json"), sent
	// as the CloudEvents datacontenttype; empty when not stated. Set it with
	// WithContentType.
	ContentType string `msgpack:",omitempty"`
	// Time is when the message was created (New sets it), sent as the
	// CloudEvents time. It is zero for messages stored by earlier versions,
	// which are sent with the time they are sent.
	Time time.Time `msgpack:",omitempty"`
	// Source is the CloudEvents source of a received message: the service
	// that published it (or whatever a foreign producer stated). A
	// publisher need not set it: the provider sends its service's name.
	Source string `msgpack:",omitempty"`
}

// Header is a message's metadata. Values should be strings, numbers, booleans
// or byte slices: they are encoded with msgpack, which decodes integers to the
// smallest fitting type.
type Header map[string]interface{}

// New returns a message for topic with a fresh UUID and the default policy
// modified by opts.
func New(topic string, payload []byte, opts ...PolicyOption) *Message {
	p := DefaultPolicy()
	for _, opt := range opts {
		opt(p)
	}
	return &Message{
		UUID:        NewUUID(),
		Topic:       topic,
		Key:         p.Key,
		Header:      Header{},
		Payload:     payload,
		Policy:      p,
		ContentType: p.ContentType,
		Time:        time.Now().UTC(),
	}
}

// NewUUID returns a new time-ordered message id.
func NewUUID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only when the system's random source does.
		return uuid.NewString()
	}
	return id.String()
}

// Get returns the value stored under key, or nil.
func (h Header) Get(key string) interface{} {
	return h[key]
}

// Set stores value under key.
func (h Header) Set(key string, value interface{}) {
	h[key] = value
}

// GetString returns the value under key if it is a string, or "".
func (h Header) GetString(key string) string {
	s, _ := h[key].(string)
	return s
}
