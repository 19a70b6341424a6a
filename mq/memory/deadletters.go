package memory

import (
	"context"
	"errors"
	"fmt"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// PeekDeadLetters implements mq.DeadLetterQueue.
func (p *Provider) PeekDeadLetters(_ context.Context, limit int) ([]mq.DeadLetter, error) {
	var out []mq.DeadLetter
	for _, d := range p.b.DeadLetters(p.cfg.Service) {
		if len(out) == limit {
			break
		}
		dl := mq.DeadLetter{Body: d.Body, Reason: d.Reason}
		dl.Message, dl.Err = message.Unmarshal(d.Body)
		if dl.Message != nil {
			dl.Topic = dl.Message.Topic
		}
		out = append(out, dl)
	}
	return out, nil
}

// ReplayDeadLetters implements mq.DeadLetterQueue: a dead letter goes back
// to this service only, to the queue of its subscription of the topic (its
// key's shard for an Ordered one, this provider's broadcast queue for a
// Broadcast one). One that cannot be decoded, or whose topic the service
// no longer subscribes to, stays, and the ones behind it go.
func (p *Provider) ReplayDeadLetters(ctx context.Context, limit int) (int, error) {
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.services[p.cfg.Service]
	if s == nil {
		return 0, nil
	}
	var (
		replayed int
		kept     []DeadLetter
		skipped  []error
	)
	for i, dl := range s.dead {
		if i >= limit || ctx.Err() != nil {
			kept = append(kept, s.dead[i:]...)
			break
		}
		m, err := message.Unmarshal(dl.Body)
		var target *queue
		switch {
		case err != nil:
			err = fmt.Errorf("%w: %w", mq.ErrNotReplayable, err)
		default:
			if target = p.destinationLocked(m.Topic, m.Key); target == nil {
				err = fmt.Errorf("%w: the service no longer subscribes to %q", mq.ErrNotReplayable, m.Topic)
			}
		}
		if target != nil {
			if len(target.items) < queueLimit {
				target.push(item{body: dl.Body})
				replayed++
				continue
			}
			err = fmt.Errorf("memory: queue full: %w", mq.ErrNacked)
		}
		kept = append(kept, dl)
		skipped = append(skipped, err)
	}
	s.dead = kept
	b.notifyLocked()
	if len(skipped) > 0 {
		return replayed, fmt.Errorf("memory: %d dead letters skipped: %w", len(skipped), errors.Join(skipped...))
	}
	return replayed, ctx.Err()
}
