package outbox

import (
	"context"
	"time"
)

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

// Declaration is a Subscription as one instance of the service declared it.
type Declaration struct {
	Subscription
	// Owner is the instance that declared it.
	Owner string
	// Live reports that the owner refreshed it recently: the instance is
	// running, and what it declared must stay.
	Live bool
}

// SubscriptionRecorder is an optional capability of a Store: it keeps what
// each instance of the service declared on the broker, beside the outbox,
// because a broker may keep bindings and queues it cannot list (AMQP
// 0-9-1). At Start the bus reads the record and lets the provider remove
// what neither this instance nor a live one declares (mq.Reconciler); a
// running bus refreshes its own declarations. Without it a restart only
// ever adds to the broker's topology.
type SubscriptionRecorder interface {
	// Declarations returns every instance's declarations; Live marks
	// those refreshed within live.
	Declarations(ctx context.Context, live time.Duration) ([]Declaration, error)
	// Declare replaces owner's declarations with subs, refreshed now.
	Declare(ctx context.Context, owner string, subs []Subscription) error
	// Refresh marks owner's declarations as refreshed now.
	Refresh(ctx context.Context, owner string) error
	// Retire marks owner's declarations as no longer live (the instance
	// stopped); they stay, for the next start to reconcile.
	Retire(ctx context.Context, owner string) error
	// Forget removes the declarations of owners: instances that are gone
	// and whose topology was removed.
	Forget(ctx context.Context, owners []string) error
}
