package outbox

import "context"

// RedeliveryCounter is an optional capability of a Store: counting the
// redeliveries of a message, so that a message that keeps crashing its consumer
// before the ack is dead-lettered after Options.MaxRedeliveries instead of
// redelivered forever. The count lives in the database because the process
// that counted in memory is the one that crashed. The bus calls it only
// for redelivered messages, so it costs nothing on the usual path. Without
// it, redeliveries are bounded only where the broker counts them
// (mq.DeliveryCounter).
type RedeliveryCounter interface {
	// CountRedelivery adds one to the redeliveries of the message of topic
	// and uuid and returns the new count.
	CountRedelivery(ctx context.Context, topic, uuid string) (int, error)
	// ForgetRedeliveries removes the count of a message that was handled
	// or dead-lettered.
	ForgetRedeliveries(ctx context.Context, topic, uuid string) error
}
