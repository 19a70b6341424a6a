package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/finalbus/final/mq"
)

var _ mq.Reconciler = (*Provider)(nil)

// Reconcile implements mq.Reconciler. Init has declared what the Config
// needs; Reconcile removes the consumers prev declared beyond it:
//
//   - a plain topic dropped (or turned Ordered or Broadcast) loses the
//     service consumer on its stream;
//   - a topic no longer Ordered loses its shard consumers and its unkeyed
//     one;
//   - a topic stream left without any consumer goes, so that a publish to
//     its topic is unroutable again.
//
// A consumer that goes is first emptied: each message it holds is copied
// to the consumer that takes its topic now (as a replayed dead letter is,
// HeaderReplayTo naming it), or to the dead-letter stream with the reason,
// and acknowledged; then it is deleted. One that another instance still
// pulls from, or that has deliveries out to one (a rolling deploy), is
// left, and its topic returned in left, for the next start. The messages
// published between Init and Reconcile reach both the old consumer and
// the new one, so the copies of those are duplicates. Broadcast consumers
// are not this method's: the server deletes those of instances that are
// gone.
func (p *Provider) Reconcile(ctx context.Context, prev mq.Subscriptions) (left mq.Subscriptions, err error) {
	s, err := p.session()
	if err != nil {
		return prev, err
	}
	var (
		errs    []error
		touched []string // topics whose streams may have no consumer left
	)
	// The dead-letter stream may not exist: a service with no
	// subscription left declares none.
	dlqReady := false
	retire := func(topic, consumer string) bool {
		if !dlqReady {
			if _, err := s.js.CreateOrUpdateStream(ctx, p.topo.dlq); err != nil {
				errs = append(errs, fmt.Errorf("mq/nats: declare stream %q: %w", p.topo.dlq.Name, err))
				return false
			}
			dlqReady = true
		}
		gone, err := p.retire(ctx, s, topic, consumer)
		if err != nil {
			errs = append(errs, err)
		}
		if !slices.Contains(touched, topic) {
			touched = append(touched, topic)
		}
		return gone
	}
	prevPlain := prev.Topics
	for _, topic := range prevPlain {
		if slices.Contains(p.topo.plain, topic) || slices.Contains(prev.Ordered, topic) || slices.Contains(prev.Broadcast, topic) {
			continue // still the service consumer's, or never was
		}
		if !retire(topic, serviceConsumer(p.cfg.Service)) {
			left.Topics = append(left.Topics, topic)
		}
	}
	for _, topic := range prev.Ordered {
		if slices.Contains(p.topo.ordered, topic) {
			continue
		}
		all := retire(topic, unkeyedConsumer(p.cfg.Service))
		for i := 0; i < mq.OrderShards; i++ {
			all = retire(topic, shardConsumer(p.cfg.Service, i)) && all
		}
		if !all {
			left.Ordered = append(left.Ordered, topic)
		}
	}
	for _, topic := range touched {
		if err := p.dropIfUnused(ctx, s, topic); err != nil {
			errs = append(errs, err)
		}
	}
	return left, errors.Join(errs...)
}

// retire empties and deletes one consumer of topic's stream; gone reports
// whether it no longer exists.
func (p *Provider) retire(ctx context.Context, s *session, topic, consumer string) (gone bool, err error) {
	stream := p.names.stream(topic)
	c, err := s.js.Consumer(ctx, stream, consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("mq/nats: retire %s/%s: %w", stream, consumer, err)
	}
	from := stream + "/" + consumer
	if info := c.CachedInfo(); info.NumWaiting > 0 || info.NumAckPending > 0 {
		p.cfg.Logger.Warn("mq/nats: consumer no subscription uses is still in use; left for the next start",
			"consumer", from, "pulls", info.NumWaiting, "unacknowledged", info.NumAckPending)
		return false, nil
	}
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		return false, fmt.Errorf("mq/nats: retire %s: %w", from, err)
	}
	// What is published from now on reaches this consumer too: it is left
	// for the next start rather than chased.
	last := st.CachedInfo().State.LastSeq
	moved, dead := 0, 0
	for more := true; more; {
		batch, err := c.FetchNoWait(16)
		if err != nil {
			return false, fmt.Errorf("mq/nats: retire %s: %w", from, err)
		}
		more = false
		var failed error
		for m := range batch.Messages() {
			if failed != nil { // give the rest back
				_ = m.Nak()
				continue
			}
			var o outcome
			switch o, failed = p.move(ctx, s, m, from, consumer, last); {
			case failed != nil:
				_ = m.Nak()
			case o == movedTo:
				moved++
				more = true
			case o == deadLettered:
				dead++
				more = true
			case o == skipped:
				more = true
			}
		}
		if failed == nil {
			failed = batch.Error()
		}
		if failed != nil {
			return false, fmt.Errorf("mq/nats: retire %s: %w", from, failed)
		}
	}
	info, err := c.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("mq/nats: retire %s: %w", from, err)
	}
	if info.NumPending > 0 || info.NumAckPending > 0 || info.NumWaiting > 0 {
		p.cfg.Logger.Warn("mq/nats: consumer no subscription uses is still in use; left for the next start", "consumer", from)
		return false, nil
	}
	if err := s.js.DeleteConsumer(ctx, stream, consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, fmt.Errorf("mq/nats: delete %s: %w", from, err)
	}
	p.cfg.Logger.Info("mq/nats: removed a consumer no subscription uses", "consumer", from, "moved", moved, "dead_lettered", dead)
	return true, nil
}

// outcome is what move did with a message.
type outcome int

const (
	movedTo      outcome = iota // copied to the consumer that takes it now
	deadLettered                // copied to the dead-letter stream
	skipped                     // a copy for another consumer: acknowledged
	later                       // published after the retirement began: given back
)

// move copies one message of a retired consumer to the consumer that takes
// its topic now, or to the dead-letter stream, and acknowledges it. A copy
// made for another consumer (a replay, or an earlier move: it reaches
// this consumer too when it shares its subject) is acknowledged and
// skipped; a message published after last is given back.
func (p *Provider) move(ctx context.Context, s *session, m jetstream.Msg, from, consumer string, last uint64) (outcome, error) {
	meta, err := m.Metadata()
	if err != nil {
		return later, err
	}
	if to, ok := lookup(m.Headers(), HeaderReplayTo); ok && to != consumer {
		return skipped, m.DoubleAck(ctx)
	}
	if meta.Sequence.Stream > last {
		return later, m.Nak()
	}
	id := copyID("move", meta.Stream, meta.Sequence.Stream, m.Headers())
	o := deadLettered
	msg, err := decode(m.Headers(), m.Data())
	if err != nil {
		err = p.deadCopy(ctx, s, m.Headers(), m.Data(), "", from,
			"undecodable, left in "+from+" when the subscriptions changed: "+err.Error(), id)
	} else if sub, ok := p.topo.target(msg.Topic, msg.Key); ok {
		o = movedTo
		err = p.redirect(ctx, s, m.Headers(), m.Data(), msg.Topic, msg.Key, sub.consumer, id)
	} else {
		err = p.deadCopy(ctx, s, m.Headers(), m.Data(), msg.Topic, from,
			fmt.Sprintf("left in %s when the service stopped subscribing to %q", from, msg.Topic), id)
	}
	if err != nil {
		return o, err
	}
	// Acknowledged and confirmed before the next fetch: a shard consumer
	// has MaxAckPending 1.
	return o, m.DoubleAck(ctx)
}

// dropIfUnused deletes topic's stream when no consumer is left on it.
func (p *Provider) dropIfUnused(ctx context.Context, s *session, topic string) error {
	name := p.names.stream(topic)
	st, err := s.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mq/nats: inspect stream %q: %w", name, err)
	}
	if st.CachedInfo().State.Consumers > 0 {
		return nil
	}
	// Looked at again just before the delete, to narrow the window in which
	// another service's new consumer, and messages kept for it, would go
	// with the stream. It is narrowed, not closed: JetStream cannot delete
	// a stream on a condition (see docs/nats.md).
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("mq/nats: inspect stream %q: %w", name, err)
	}
	if info.State.Consumers > 0 || info.State.Msgs > 0 {
		return nil
	}
	// A service that subscribes to the topic meanwhile re-declares the
	// stream when it finds it gone (topology.ensure).
	if err := s.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("mq/nats: delete stream %q: %w", name, err)
	}
	p.cfg.Logger.Info("mq/nats: removed a stream no consumer uses", "stream", name, "topic", topic)
	return nil
}
