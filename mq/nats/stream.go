package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A topic's stream keeps each message for the consumers it has when the
// message is stored (interest retention), and a consumer starts with what
// is published after it (DeliverPolicy New). A stream created with its
// subjects before any consumer would confirm a publish and drop it: the
// publisher's outbox would delete a row nobody receives. So a topic's
// stream is born closed, on a subject no publisher uses (a publish to the
// topic is refused as unroutable, as before any stream), and opened by its
// first subscriber:
//
//  1. the closed stream is created;
//  2. the service's guard, a consumer of every subject that never pulls,
//     is added: from now on the stream keeps every message;
//  3. the stream takes its subjects (publishes are confirmed and kept);
//  4. the service's consumers are created with DeliverPolicy All: the
//     stream holds only what was published since it opened (a moment
//     before this service's step 3, if another service opened it first);
//  5. the guard goes.
//
// The guard is what lets an Ordered topic's filtered consumers, which
// nats-server 2.9 refuses on a stream without their subjects, be created
// after the stream opens. Each step is idempotent and a declaration that
// finds the stream closed, or its service's guard on it, resumes at step 2:
// a service killed in between resumes when it starts again. The guard is
// not durable: if that service does not come back within guardIdle, the
// server deletes it, and the stream keeps messages only for the consumers
// other services have.
const guardIdle = 10 * time.Minute

// closedSubjects are the subjects of a topic stream that is not open yet.
func (n names) closedSubjects(stream string) []string {
	return []string{n.prefix + ".~closed." + stream}
}

// guardConsumer names the consumer that keeps a topic stream's messages
// while service opens it.
func guardConsumer(service string) string { return escape(service) + "_g" }

// declareStream creates or updates the topic stream cfg, opening it if it
// is new or a declaration of this service left it half open.
func (t topology) declareStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	closed := cfg
	closed.Subjects = t.names.closedSubjects(cfg.Name)
	for attempt := 0; ; attempt++ {
		err := t.declareStreamOnce(ctx, js, cfg, closed)
		// Another service may create the stream meanwhile, its own way, or
		// its Reconcile delete it while it has no consumer: look again.
		if attempt < 3 && (errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || errors.Is(err, jetstream.ErrStreamNotFound)) {
			continue
		}
		return err
	}
}

func (t topology) declareStreamOnce(ctx context.Context, js jetstream.JetStream, cfg, closed jetstream.StreamConfig) error {
	st, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := js.CreateStream(ctx, closed); err != nil {
			return fmt.Errorf("mq/nats: declare stream %q: %w", cfg.Name, err)
		}
		return t.open(ctx, js, cfg)
	}
	if err != nil {
		return fmt.Errorf("mq/nats: declare stream %q: %w", cfg.Name, err)
	}
	if slices.Equal(st.CachedInfo().Config.Subjects, closed.Subjects) {
		return t.open(ctx, js, cfg)
	}
	switch _, err := js.Consumer(ctx, cfg.Name, guardConsumer(t.service)); {
	case err == nil:
		return t.open(ctx, js, cfg) // this service stopped while opening it
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return fmt.Errorf("mq/nats: declare stream %q: %w", cfg.Name, err)
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("mq/nats: declare stream %q: %w", cfg.Name, err)
	}
	return nil
}

// open gives the topic stream cfg its subjects once the service's guard
// keeps what they bring, creates the service's consumers on it, and drops
// the guard (steps 2-5 above). A guard already there is left as it is: an
// update would restart its inactivity clock, and a service whose
// declarations kept failing would then keep it, and every message, for
// ever.
func (t topology) open(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	guard := jetstream.ConsumerConfig{
		Name:              guardConsumer(t.service),
		Description:       "final: keeps the messages of a new stream while service " + t.service + " declares its consumers",
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckExplicitPolicy,
		InactiveThreshold: guardIdle,
	}
	_, err := js.Consumer(ctx, cfg.Name, guard.Name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		_, err = js.CreateConsumer(ctx, cfg.Name, guard)
	}
	if err != nil {
		return fmt.Errorf("mq/nats: guard stream %q: %w", cfg.Name, err)
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("mq/nats: open stream %q: %w", cfg.Name, err)
	}
	for _, sub := range t.subs {
		if sub.stream != cfg.Name {
			continue
		}
		if _, err := t.consumer(ctx, js, sub, jetstream.DeliverAllPolicy); err != nil {
			return err
		}
	}
	if err := js.DeleteConsumer(ctx, cfg.Name, guard.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("mq/nats: drop the guard of stream %q: %w", cfg.Name, err)
	}
	return nil
}

// consumer creates sub's consumer, starting with what the stream holds
// under policy deliver, or updates it. A consumer keeps where it was made
// to start (the server refuses to change it), so one created while its
// stream opened is updated with DeliverPolicy All. An update that finds the
// consumer gone, or a creation that finds it made meanwhile, looks again,
// so that a consumer deleted after the look is created with deliver, not
// with the policy of the one that was there. (nats-server 2.9 knows no
// create-only or update-only request, and takes both as create-or-update.)
func (t topology) consumer(ctx context.Context, js jetstream.JetStream, sub subscription, deliver jetstream.DeliverPolicy) (jetstream.Consumer, error) {
	for attempt := 0; ; attempt++ {
		cfg := sub.cfg
		cfg.DeliverPolicy = deliver
		var c jetstream.Consumer
		existing, err := js.Consumer(ctx, sub.stream, sub.consumer)
		switch {
		case err == nil:
			old := existing.CachedInfo().Config
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = old.DeliverPolicy, old.OptStartSeq, old.OptStartTime
			c, err = js.UpdateConsumer(ctx, sub.stream, cfg)
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			c, err = js.CreateConsumer(ctx, sub.stream, cfg)
		}
		if err != nil && attempt < 2 && (errors.Is(err, jetstream.ErrConsumerDoesNotExist) || errors.Is(err, jetstream.ErrConsumerExists)) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("mq/nats: declare consumer %s/%s: %w", sub.stream, sub.consumer, err)
		}
		return c, nil
	}
}
