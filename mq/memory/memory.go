// Package memory is an in-process broker: a test double for mq.IProvider.
// It is not a transport. It keeps what the contract asks of a provider, the
// way RabbitMQ does it, and passes the mq/mqtest conformance suite like the
// real providers:
//
//   - the instances of a service compete for the messages of its plain
//     topics, through one queue per service;
//   - an Ordered topic is split by key (mq.Shard) into mq.OrderShards shard
//     queues per service, and a shard has at most one delivery out at a time
//     across the service's instances: a key's messages are handled one after
//     the other, in order, by whichever instance takes them, while the
//     shards go in parallel. (RabbitMQ's single active consumer of a shard
//     may hold up to Prefetch of them; one is the strictest reading of the
//     contract, and what a NATS consumer with MaxAckPending 1 does.)
//   - a Broadcast topic reaches every instance through a queue of its own,
//     which lives as long as the provider;
//   - a requeued delivery goes back to the head of its queue, as does every
//     delivery a provider has not settled when it is closed, marked
//     redelivered;
//   - publishes confirm at once, an unroutable message is returned, and dead
//     letters stay in memory (Broker.DeadLetters).
package memory

import "sync"

// Broker holds the queues shared by the providers made from it.
type Broker struct {
	mu       sync.Mutex
	services map[string]*service
	private  map[*queue][]string // broadcast queues, one per provider, with their topics
	// wake is closed, and replaced, whenever a queue may have become ready:
	// consumers with nothing to take wait on it.
	wake chan struct{}
}

// DeadLetter is a message moved to a service's dead-letter queue.
type DeadLetter struct {
	Body   []byte
	Reason string
}

// NewBroker returns an empty broker.
func NewBroker() *Broker {
	return &Broker{services: map[string]*service{}, private: map[*queue][]string{}, wake: make(chan struct{})}
}

// Provider returns a new provider connected to b.
func (b *Broker) Provider() *Provider {
	return &Provider{b: b, done: make(chan struct{}), out: map[*delivery]uint64{}}
}

// DeadLetters returns what service dead-lettered so far.
func (b *Broker) DeadLetters(service string) []DeadLetter {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.services[service]; s != nil {
		return append([]DeadLetter(nil), s.dead...)
	}
	return nil
}

// notifyLocked wakes the consumers waiting for a ready queue.
func (b *Broker) notifyLocked() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// routeLocked returns the queues bound to topic, for a message with key.
func (b *Broker) routeLocked(topic, key string) []*queue {
	var targets []*queue
	for _, s := range b.services {
		if s.queue != nil && s.topics[topic] {
			targets = append(targets, s.queue)
		}
		if shards := s.shards[topic]; shards != nil {
			targets = append(targets, shards[shardOf(key)])
		}
	}
	for q, topics := range b.private {
		for _, t := range topics {
			if t == topic {
				targets = append(targets, q)
				break
			}
		}
	}
	return targets
}

// deadLetterLocked appends body to the dead letters of the service s.
func (s *service) deadLetterLocked(body []byte, reason string) {
	s.dead = append(s.dead, DeadLetter{Body: body, Reason: reason})
}
