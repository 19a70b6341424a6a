package final

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is: the bus wraps them with
// details.
var (
	// ErrClosed is returned by calls on a bus after Shutdown.
	ErrClosed = errors.New("final: bus is closed")
	// ErrNotStarted is returned by publishing before Start.
	ErrNotStarted = errors.New("final: bus is not started")
	// ErrStarted is returned by Start twice, or Subscribe after Start.
	ErrStarted = errors.New("final: bus is already started")
	// ErrNilDB: New was given a nil *sql.DB.
	ErrNilDB = errors.New("final: nil *sql.DB")
	// ErrNilProvider: New was given a nil provider.
	ErrNilProvider = errors.New("final: nil mq provider")
	// ErrNilTx: a nil transaction (*sql.Tx, pgx.Tx or outbox.Tx) was
	// passed.
	ErrNilTx = errors.New("final: nil transaction")
	// ErrTxDone: the transaction was already committed or rolled back. It
	// also matches sql.ErrTxDone when the database said so.
	ErrTxDone = errors.New("final: transaction already committed or rolled back")
	// ErrInvalidService: the service name is not 1-48 of [A-Za-z0-9_.-]
	// with at least one letter, digit or '_'.
	ErrInvalidService = errors.New("final: invalid service name")
	// ErrInvalidTopic: the topic is not 1-250 of [A-Za-z0-9_.-].
	ErrInvalidTopic = errors.New("final: invalid topic")
	// ErrInvalidUUID: the message UUID is longer than MaxUUIDLen bytes,
	// which a consumer's inbox could not record.
	ErrInvalidUUID = errors.New("final: invalid message UUID")
	// ErrInvalidOption: an Options field is out of range; the message names it.
	ErrInvalidOption = errors.New("final: invalid option")
	// ErrInvalidHeader: a message header cannot travel in the CloudEvents
	// wire format (a value that is no string, number, boolean or []byte,
	// or a name with a CloudEvents prefix).
	ErrInvalidHeader = errors.New("final: invalid message header")
	// ErrInvalidPolicy: the message policy options contradict each other.
	ErrInvalidPolicy = errors.New("final: invalid message policy")
	// ErrPayloadTooLarge: the payload exceeds Options.MaxPayloadBytes.
	ErrPayloadTooLarge = errors.New("final: payload too large")
	// ErrDuplicateSubscription: the topic already has a handler.
	ErrDuplicateSubscription = errors.New("final: topic already subscribed")
	// ErrInvalidSubscription: the subscription's modes contradict each
	// other (Inbox with Broadcast).
	ErrInvalidSubscription = errors.New("final: invalid subscription")
	// ErrNilHandler: Handler was given nil.
	ErrNilHandler = errors.New("final: nil handler")
	// ErrHandlerPanic wraps a panic recovered from a handler or middleware.
	ErrHandlerPanic = errors.New("final: handler panicked")
	// ErrNoHandler: a delivery's topic has no handler in this service.
	ErrNoHandler = errors.New("final: no handler for topic")
	// ErrNotSupported: the provider lacks the optional capability a call
	// needs.
	ErrNotSupported = errors.New("final: not supported by the provider")
	// ErrPermanent marks a handler error that retrying cannot fix: the
	// message is dead-lettered at once. Wrap errors with Permanent.
	ErrPermanent = errors.New("final: permanent failure")
	// ErrShutdownTimeout: Shutdown reached its bound (Options.ShutdownTimeout
	// or the context's deadline) with work still running, and returned
	// without it; the message says what was left. Handlers and PublishAsync
	// callbacks that ignore cancellation go on in their goroutines, which
	// the bus can neither stop nor wait for; rows whose confirm was not in
	// stay in the outbox and are sent again.
	ErrShutdownTimeout = errors.New("final: shutdown timed out")
)

// Permanent wraps err so that the bus dead-letters the message at once
// instead of retrying it: for input that can never be handled.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}
