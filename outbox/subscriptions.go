package outbox

import "context"

// Kinds of Subscription.
const (
	KindCompeting = "competing" // the service's instances share the topic's messages
	KindBroadcast = "broadcast" // every instance receives every message
	KindOrdered   = "ordered"   // per-key order across the instances
)

// Subscription is one topic a service declared on the broker, and how.
type Subscription struct {
	Topic string
	Kind  string // KindCompeting, KindBroadcast or KindOrdered
}

// SubscriptionRecorder is an optional capability of a Store: it keeps what
// the service declared on the broker across restarts, beside the outbox,
// because a broker may keep bindings and queues it cannot list (AMQP
// 0-9-1). At Start the bus reads the record, lets the provider remove what
// the new subscriptions no longer need (mq.Reconciler), and writes the new
// record. Without it a restart only ever adds to the broker's topology.
type SubscriptionRecorder interface {
	// Subscriptions returns the record; empty when none was written.
	Subscriptions(ctx context.Context) ([]Subscription, error)
	// SetSubscriptions replaces the record with subs, atomically.
	SetSubscriptions(ctx context.Context, subs []Subscription) error
}
