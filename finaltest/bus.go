package finaltest

import (
	"context"
	"database/sql"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// NewBus returns a started bus of service on db whose broker is a sink:
// it confirms every publish and delivers nothing, so that the code under
// test publishes as in production and its committed rows are deleted. opt
// is as for final.New (final.DefaultOptions() for most tests); a bus with
// subscriptions needs a broker of its own (mq/memory). The test fails
// when the bus does not start (a database the bus does not recognise
// needs opt.Dialect); the bus is shut down when the test ends.
func NewBus(t TB, service string, db *sql.DB, opt final.Options) *final.Bus {
	t.Helper()
	bus := final.New(service, db, sink{}, opt)
	if err := bus.StartContext(t.Context()); err != nil {
		t.Fatalf("finaltest: start the bus of %q: %v", service, err)
		return nil
	}
	t.Cleanup(func() {
		if err := bus.Shutdown(); err != nil {
			t.Errorf("finaltest: shut the bus of %q down: %v", service, err)
		}
	})
	return bus
}

// sink is a broker that takes every message and delivers none.
type sink struct{}

var _ mq.EncodedPublisher = sink{}

func (sink) Init(context.Context, mq.Config) error { return nil }

func (sink) Publish(context.Context, *message.Message) (mq.Confirmation, error) {
	return confirmed{}, nil
}

func (sink) PublishEncoded(context.Context, *message.Message, []byte) (mq.Confirmation, error) {
	return confirmed{}, nil
}

// Consume is never called: the bus consumes only for subscriptions, which
// a started bus no longer takes.
func (sink) Consume(context.Context) (<-chan mq.Delivery, error) {
	return nil, final.ErrNotSupported
}

func (sink) Close() error { return nil }

type confirmed struct{}

func (confirmed) Wait(ctx context.Context) error { return ctx.Err() }
