package final

import (
	"context"
	"fmt"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// DeadLetter is a message this service dead-lettered.
type DeadLetter struct {
	// Message is the decoded message; nil when it cannot be decoded, and
	// Err says why.
	Message *message.Message
	Err     error
	Topic   string    // the topic it was published under
	Reason  string    // why it was dead-lettered
	At      time.Time // when
}

// DeadLetters returns up to limit messages of the service's dead-letter
// queue, oldest first, leaving them there. It needs a provider with
// mq.DeadLetterQueue (ErrNotSupported otherwise) and a started bus.
func (b *Bus) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	dlq, err := b.deadLetterQueue()
	if err != nil {
		return nil, err
	}
	raw, err := dlq.PeekDeadLetters(ctx, limit)
	out := make([]DeadLetter, 0, len(raw))
	for _, r := range raw {
		dl := DeadLetter{Topic: r.Topic, Reason: r.Reason, At: r.At}
		dl.Message, dl.Err = r.Message, r.Err
		out = append(out, dl)
	}
	return out, err
}

// ReplayDeadLetters publishes up to limit dead letters to their topics
// again, oldest first, and returns how many. Each leaves the dead-letter
// queue only once the broker confirmed it again, so a failure half way
// loses nothing. Replayed messages keep their UUID.
func (b *Bus) ReplayDeadLetters(ctx context.Context, limit int) (int, error) {
	dlq, err := b.deadLetterQueue()
	if err != nil {
		return 0, err
	}
	return dlq.ReplayDeadLetters(ctx, limit)
}

func (b *Bus) deadLetterQueue() (mq.DeadLetterQueue, error) {
	b.mu.Lock()
	state := b.state
	b.mu.Unlock()
	switch state {
	case stateNew:
		return nil, ErrNotStarted
	case stateClosed:
		return nil, ErrClosed
	}
	dlq, ok := b.provider.(mq.DeadLetterQueue)
	if !ok {
		return nil, fmt.Errorf("%w: %T has no dead-letter queue access", ErrNotSupported, b.provider)
	}
	return dlq, nil
}
