package final

import "fmt"

// Subscription binds a topic to a middleware chain and a handler. Build it
// with Bus.Subscribe before Start.
type Subscription struct {
	bus         *Bus
	topic       string
	middlewares []HandlerFunc
	inbox       bool
	broadcast   bool
	ordered     bool
}

// Subscribe starts a subscription of this service to topic. Instances of
// one service share the topic's messages; each other service subscribed to
// it gets its own copy.
func (b *Bus) Subscribe(topic string) *Subscription {
	return &Subscription{bus: b, topic: topic}
}

// Inbox makes the subscription effectively-once: the chain runs inside a
// database transaction the bus opens (Context.Tx, Context.TxBus), which
// also records the message UUID in the service's inbox table
// (final_<service>_inbox). A message whose UUID is recorded already is
// acknowledged without calling the handler; a failing handler rolls back
// its writes, its publishes and the record together.
func (s *Subscription) Inbox() *Subscription {
	s.inbox = true
	return s
}

// Broadcast makes every running instance of the service receive every
// message of the topic, through a queue of its own that lives as long as
// its connection, instead of the instances sharing the messages. An
// instance does not receive what was published while it was not
// connected. It cannot be combined with Inbox, whose record is per
// service.
func (s *Subscription) Broadcast() *Subscription {
	s.broadcast = true
	return s
}

// Ordered makes the subscription handle messages with the same key
// (message.WithKey) one at a time, in the order they reached the broker,
// across all instances of the service; messages with different keys run in
// parallel. A failing message holds back only its own key while it is
// retried, then is dead-lettered and its key moves on. Messages without a
// key are ordered among themselves. It cannot be combined with Broadcast.
func (s *Subscription) Ordered() *Subscription {
	s.ordered = true
	return s
}

// Middleware appends middlewares, run in order around the handler.
func (s *Subscription) Middleware(mw ...HandlerFunc) *Subscription {
	s.middlewares = append(s.middlewares, mw...)
	return s
}

// Handler completes the subscription. It fails (and Start then fails
// too) for an invalid topic, a nil handler, a topic already subscribed, or
// a bus already started.
func (s *Subscription) Handler(h HandlerFunc) error {
	err := s.bus.addRoute(s.topic, s.middlewares, h, route{inbox: s.inbox, broadcast: s.broadcast, ordered: s.ordered})
	if err != nil {
		s.bus.mu.Lock()
		if s.bus.routeErr == nil {
			s.bus.routeErr = err
		}
		s.bus.mu.Unlock()
	}
	return err
}

// route is one topic's complete chain.
type route struct {
	chain     []HandlerFunc // middlewares then the handler
	inbox     bool          // run in a transaction with an inbox record
	broadcast bool          // every instance receives every message
	ordered   bool          // one message per key at a time, in order
}

func (b *Bus) addRoute(topic string, mw []HandlerFunc, h HandlerFunc, mode route) error {
	if err := validateTopic(topic); err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("%w: topic %q", ErrNilHandler, topic)
	}
	if mode.inbox && mode.broadcast {
		return fmt.Errorf("%w: topic %q: Inbox records a message once per service, Broadcast delivers it to every instance", ErrInvalidSubscription, topic)
	}
	if mode.ordered && mode.broadcast {
		return fmt.Errorf("%w: topic %q: Ordered and Broadcast cannot be combined", ErrInvalidSubscription, topic)
	}
	for i, m := range mw {
		if m == nil {
			return fmt.Errorf("%w: middleware %d of topic %q", ErrNilHandler, i, topic)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != stateNew {
		return fmt.Errorf("%w: Subscribe(%q) must come before Start", ErrStarted, topic)
	}
	if _, ok := b.routes[topic]; ok {
		return fmt.Errorf("%w: %q", ErrDuplicateSubscription, topic)
	}
	chain := make([]HandlerFunc, 0, len(mw)+1)
	chain = append(chain, mw...)
	mode.chain = append(chain, h)
	b.routes[topic] = &mode
	return nil
}
