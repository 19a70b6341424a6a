package amqp

import (
	"context"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// Publish sends msg to the exchange under its topic, mandatory, and returns
// its pending confirmation.
func (p *Provider) Publish(ctx context.Context, msg *message.Message) (mq.Confirmation, error) {
	var body []byte
	if p.cfg.WireFormat == mq.Envelope {
		var err error
		if body, err = message.Marshal(msg); err != nil {
			return nil, err
		}
	}
	return p.PublishEncoded(ctx, msg, body)
}

// PublishEncoded implements mq.EncodedPublisher: body is msg as encoded by
// message.Marshal. In the CloudEvents wire format body is not used: msg
// must be whole (its Header and Payload).
func (p *Provider) PublishEncoded(ctx context.Context, msg *message.Message, body []byte) (mq.Confirmation, error) {
	return p.PublishEncodedAfter(ctx, nil, msg, body)
}

// PublishEncodedAfter implements mq.OrderedPublisher. A session has one
// publishing channel, so publishes on the same session reach the broker in
// order; a session is replaced only after it was lost.
func (p *Provider) PublishEncodedAfter(ctx context.Context, prev mq.Confirmation, msg *message.Message, body []byte) (mq.Confirmation, error) {
	pub := amqp.Publishing{
		ContentType: mq.EnvelopeContentType,
		MessageId:   msg.UUID,
		Timestamp:   time.Now(),
		Type:        msg.Topic,
		Body:        body,
	}
	if p.cfg.WireFormat == mq.CloudEvents {
		eventPublishing(&pub, msg, p.cfg.Service)
	}
	pub.DeliveryMode = amqp.Transient
	if msg.Policy == nil || msg.Policy.Durable {
		pub.DeliveryMode = amqp.Persistent
	}
	if msg.Policy != nil && msg.Policy.TTL > 0 {
		ms := msg.Policy.TTL.Milliseconds()
		if ms < 1 {
			ms = 1
		}
		pub.Expiration = strconv.FormatInt(ms, 10)
	}
	// A fire-and-forget message (Confirm false) may be lost by contract:
	// it is not mandatory, so nobody has to collect its return.
	mandatory := msg.Policy == nil || msg.Policy.Confirm
	return p.publish(ctx, p.topo.exchange, mq.RoutingKey(msg.Topic, msg.Key), mandatory, pub, prev)
}

// follows reports whether a publish on s is routed after prev.
func follows(s *session, prev mq.Confirmation) bool {
	if prev == nil {
		return true
	}
	c, ok := prev.(*confirmation)
	if !ok {
		return false // not ours: nothing is known about it
	}
	if c.s == s {
		return true
	}
	select {
	case <-c.dc.Done():
		return c.dc.Acked()
	default:
		return false
	}
}

// publish sends pub. A mandatory publish is registered with the return
// tracker and must be waited on, which settles the registration.
// It is refused with mq.ErrOutOfOrder when it could overtake after, which
// may be nil.
func (p *Provider) publish(ctx context.Context, exchange, key string, mandatory bool, pub amqp.Publishing, after mq.Confirmation) (mq.Confirmation, error) {
	s, err := p.session()
	if err != nil {
		return nil, err
	}
	if err := s.blockedErr(); err != nil {
		return nil, err
	}
	if !follows(s, after) {
		return nil, fmt.Errorf("amqp: message %s: %w", pub.MessageId, mq.ErrOutOfOrder)
	}
	if mandatory {
		s.returns.track(pub.MessageId)
	}
	dc, err := s.pub.PublishWithDeferredConfirmWithContext(ctx, exchange, key, mandatory, false, pub)
	if err != nil {
		if mandatory {
			s.returns.settle(pub.MessageId)
		}
		return nil, fmt.Errorf("amqp: publish: %w: %w", mq.ErrUnavailable, err)
	}
	c := &confirmation{dc: dc, id: pub.MessageId, s: s}
	if mandatory {
		c.returns = s.returns
	}
	return c, nil
}
