package nats

import (
	"context"
	"strconv"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A message moves by copy: a copy is published, its stream's ack awaited,
// and only then is the original acknowledged or deleted. A crash in
// between leaves a duplicate, never a loss, and the copy's message id
// (derived from the original's stream and sequence) lets the target
// stream's duplicate window drop the copy made again.

// copyHeaders returns h without the headers a copy leaves behind: those of
// NATS (the message id, expectations) and this package's (TTL, dead-letter
// records, replay target).
func copyHeaders(h natsgo.Header) natsgo.Header {
	out := natsgo.Header{}
	for k, vs := range h {
		if !ownHeader(k) {
			out[k] = vs
		}
	}
	return out
}

// redirect publishes a copy of a stored message to the subject of topic
// and key, for the one consumer target (HeaderReplayTo), and waits for its
// stream's ack.
func (p *Provider) redirect(ctx context.Context, s *session, h natsgo.Header, data []byte, topic, key, target, id string) error {
	h = copyHeaders(h)
	h.Set(HeaderReplayTo, target)
	h.Set(jetstream.MsgIDHeader, id)
	return p.publishWait(ctx, s, &natsgo.Msg{Subject: p.names.publishSubject(topic, key), Header: h, Data: data}, id)
}

// deadCopy publishes a copy of a stored message of topic, read from
// stream/consumer from, to the service's dead-letter stream with reason,
// and waits for the ack.
func (p *Provider) deadCopy(ctx context.Context, s *session, h natsgo.Header, data []byte, topic, from, reason, id string) error {
	h = copyHeaders(h)
	h.Set(HeaderDeadReason, percentEncode(reason))
	h.Set(HeaderDeadAt, time.Now().UTC().Format(time.RFC3339Nano))
	h.Set(HeaderDeadTopic, topic)
	h.Set(HeaderDeadFrom, from)
	h.Set(jetstream.MsgIDHeader, id)
	return p.publishWait(ctx, s, &natsgo.Msg{Subject: p.names.dlqSubject(p.cfg.Service), Header: h, Data: data}, id)
}

func (p *Provider) publishWait(ctx context.Context, s *session, m *natsgo.Msg, id string) error {
	conf, err := p.publish(s, m, id)
	if err != nil {
		return err
	}
	return conf.Wait(ctx)
}

// copyID is the message id of a copy of the message at seq in stream, with
// headers h: a stream's sequence numbers start again when it is deleted and
// created anew, so the original's own message id is part of it, lest a
// copy of another message within the duplicate window be dropped as this
// one's duplicate.
func copyID(kind, stream string, seq uint64, h natsgo.Header) string {
	return kind + ":" + stream + ":" + strconv.FormatUint(seq, 10) + ":" + h.Get(jetstream.MsgIDHeader)
}
