package nats

import (
	"context"
	"fmt"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// Publish sends msg to its topic's subject (its shard's, when it has a
// key) and returns its pending confirmation: JetStream's publish ack.
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

// PublishEncodedAfter implements mq.OrderedPublisher. The messages of one
// connection reach the server, and their stream, in the order they were
// written, and a session is one connection: so a publish follows prev when
// prev went out on the live session and has not failed, or when prev is
// confirmed.
func (p *Provider) PublishEncodedAfter(ctx context.Context, prev mq.Confirmation, msg *message.Message, body []byte) (mq.Confirmation, error) {
	s, err := p.session()
	if err != nil {
		return nil, err
	}
	if !follows(s, prev) {
		return nil, fmt.Errorf("mq/nats: message %s: %w", msg.UUID, mq.ErrOutOfOrder)
	}
	m := encode(msg, body, p.cfg.WireFormat, p.cfg.Service, time.Now())
	m.Subject = p.names.publishSubject(msg.Topic, msg.Key)
	return p.publish(s, m, msg.UUID)
}

// publish sends m on s without waiting. nats.go's own retry of a publish
// that no stream answered is off: a retry could land behind a later
// publish, and a message no stream captures is reported as such.
func (p *Provider) publish(s *session, m *natsgo.Msg, id string) (*confirmation, error) {
	if !s.nc.IsConnected() {
		return nil, fmt.Errorf("mq/nats: not connected: %w", mq.ErrUnavailable)
	}
	fut, err := s.js.PublishMsgAsync(m, jetstream.WithRetryAttempts(0))
	if err != nil {
		return nil, fmt.Errorf("mq/nats: publish %s: %w: %w", id, mq.ErrUnavailable, err)
	}
	return newConfirmation(fut, s, id), nil
}

// follows reports whether a publish on s is stored after prev.
func follows(s *session, prev mq.Confirmation) bool {
	if prev == nil {
		return true
	}
	c, ok := prev.(*confirmation)
	if !ok {
		return false // not ours: nothing is known about it
	}
	if settled, err := c.poll(); settled {
		return err == nil
	}
	return c.s == s
}
