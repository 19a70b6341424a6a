package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/finalbus/final/mq"
)

// PeekDeadLetters implements mq.DeadLetterQueue: it reads the dead-letter
// stream by sequence, which leaves it as it is.
func (p *Provider) PeekDeadLetters(ctx context.Context, limit int) ([]mq.DeadLetter, error) {
	_, stream, err := p.dlqStream(ctx)
	if err != nil {
		return nil, err
	}
	var out []mq.DeadLetter
	for seq := uint64(1); len(out) < limit; {
		raw, ok, err := p.nextDeadLetter(ctx, stream, seq)
		if err != nil || !ok {
			return out, err
		}
		out = append(out, deadLetter(raw))
		seq = raw.Sequence + 1
	}
	return out, nil
}

// ReplayDeadLetters implements mq.DeadLetterQueue. A dead letter is
// published again to its topic's stream, on the subject of its key's shard,
// with HeaderReplayTo naming the consumer of this service that takes it
// now; the other consumers of the stream (other services, other instances'
// broadcast consumers) acknowledge it without handing it out. It leaves
// the dead-letter stream once its stream acked the copy. The copy's
// message id is the dead letter's stream sequence, so two replays of the
// same dead letter within the duplicate window store one copy.
func (p *Provider) ReplayDeadLetters(ctx context.Context, limit int) (int, error) {
	s, stream, err := p.dlqStream(ctx)
	if err != nil {
		return 0, err
	}
	var (
		replayed int
		skipped  []error
		seq      = uint64(1)
	)
	for seen := 0; seen < limit && ctx.Err() == nil; seen++ {
		raw, ok, err := p.nextDeadLetter(ctx, stream, seq)
		if err != nil {
			return replayed, errors.Join(append(skipped, err)...)
		}
		if !ok {
			break
		}
		seq = raw.Sequence + 1
		if err := p.replay(ctx, s, stream, raw); err != nil {
			if !errors.Is(err, mq.ErrNotReplayable) {
				return replayed, errors.Join(append(skipped, err)...)
			}
			p.cfg.Logger.Warn("mq/nats: dead letter not replayable; left in the dead-letter stream", "seq", raw.Sequence, "err", err)
			skipped = append(skipped, err)
			continue
		}
		replayed++
	}
	if len(skipped) > 0 {
		return replayed, fmt.Errorf("mq/nats: %d dead letters skipped: %w", len(skipped), errors.Join(skipped...))
	}
	return replayed, ctx.Err()
}

// replay sends one dead letter back to this service, and removes it.
func (p *Provider) replay(ctx context.Context, s *session, stream jetstream.Stream, raw *jetstream.RawStreamMsg) error {
	msg, err := decode(raw.Header, raw.Data)
	if err != nil {
		return fmt.Errorf("%w: seq %d: %w", mq.ErrNotReplayable, raw.Sequence, err)
	}
	sub, ok := p.topo.target(msg.Topic, msg.Key)
	if !ok {
		return fmt.Errorf("%w: %s: the service no longer subscribes to %q", mq.ErrNotReplayable, msg.UUID, msg.Topic)
	}
	id := copyID("replay", p.topo.dlq.Name, raw.Sequence, raw.Header)
	err = p.redirect(ctx, s, raw.Header, raw.Data, msg.Topic, msg.Key, sub.consumer, id)
	if errors.Is(err, mq.ErrUnroutable) {
		return fmt.Errorf("%w: %s: %w", mq.ErrNotReplayable, msg.UUID, err)
	}
	if err != nil {
		return fmt.Errorf("mq/nats: replay dead letter %s: %w", msg.UUID, err)
	}
	if err := stream.DeleteMsg(ctx, raw.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("mq/nats: replay dead letter %s: remove it from the dead-letter stream: %w", msg.UUID, err)
	}
	return nil
}

// dlqStream returns the live session and the service's dead-letter stream.
func (p *Provider) dlqStream(ctx context.Context) (*session, jetstream.Stream, error) {
	if !p.topo.consumes() {
		return nil, nil, errors.New("mq/nats: the service subscribes to no topic, so it has no dead-letter stream")
	}
	s, err := p.session()
	if err != nil {
		return nil, nil, err
	}
	stream, err := s.js.Stream(ctx, p.topo.dlq.Name)
	if err != nil {
		return nil, nil, fmt.Errorf("mq/nats: dead-letter stream %q: %w", p.topo.dlq.Name, err)
	}
	return s, stream, nil
}

// nextDeadLetter returns the first dead letter at seq or after it; ok is
// false when there is none.
func (p *Provider) nextDeadLetter(ctx context.Context, stream jetstream.Stream, seq uint64) (*jetstream.RawStreamMsg, bool, error) {
	raw, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(p.topo.dlq.Subjects[0]))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("mq/nats: read dead letters: %w", err)
	}
	return raw, true, nil
}

// deadLetter reads what DeadLetter recorded and decodes the message; the
// topic falls back to the message's.
func deadLetter(raw *jetstream.RawStreamMsg) mq.DeadLetter {
	dl := mq.DeadLetter{Body: raw.Data}
	dl.Topic, _ = lookup(raw.Header, HeaderDeadTopic)
	if v, ok := lookup(raw.Header, HeaderDeadReason); ok {
		if r, err := percentDecode(v); err == nil {
			dl.Reason = r
		} else {
			dl.Reason = v
		}
	}
	if v, ok := lookup(raw.Header, HeaderDeadAt); ok {
		dl.At, _ = time.Parse(time.RFC3339Nano, v)
	}
	dl.Message, dl.Err = decode(raw.Header, raw.Data)
	if dl.Topic == "" && dl.Message != nil {
		dl.Topic = dl.Message.Topic
	}
	return dl
}
