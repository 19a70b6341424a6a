package main

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/finalbus/final"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// body is a library-encoded message of the configured payload size.
func (e *benchEnv) body(topic string, seq uint64) []byte {
	b, _ := message.Marshal(message.New(topic, e.payload(seq)))
	return b
}

// preloaded is a message of the configured payload size as a producer in
// the configured wire format sends it.
func (e *benchEnv) preloaded(topic string, seq uint64) rawMsg {
	m := message.New(topic, e.payload(seq))
	if e.cfg.wire == mq.CloudEvents {
		return rawMsg{id: m.UUID, event: m}
	}
	b, _ := message.Marshal(m)
	return rawMsg{id: m.UUID, body: b}
}

// rawPublishTo publishes n messages to pipe, split evenly over its
// publishers, each keeping up to the pipe's window of confirms
// outstanding, and returns the time until the last confirm.
func rawPublishTo(pipe rawPipe, n int, msg func(i int) rawMsg) (time.Duration, error) {
	pubs := pipe.publishers()
	window := pipe.settings().Window
	errs := make([]error, len(pubs))
	var wg sync.WaitGroup
	start := time.Now()
	for k, pub := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = publishConfirmed(pub, window, k*n/len(pubs), (k+1)*n/len(pubs), msg)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// publishConfirmed publishes messages from to to-1 on pub, keeping up to
// window confirms outstanding, and returns once the last is confirmed.
func publishConfirmed(pub rawPublisher, window, from, to int, msg func(i int) rawMsg) error {
	pending := make(chan func() error, window)
	failed := make(chan error, 1)
	go func() {
		defer close(failed)
		for confirm := range pending {
			if err := confirm(); err != nil {
				failed <- fmt.Errorf("raw publish: %w", err)
				for range pending {
				}
				return
			}
		}
	}()
	for i := from; i < to; i++ {
		confirm, err := pub.publish(msg(i))
		if err != nil {
			close(pending)
			<-failed
			return err
		}
		pending <- confirm
	}
	close(pending)
	return <-failed
}

type rawPublishResult struct {
	confirmed float64 // messages per second until the last confirm
	consumed  float64 // messages per second until the consumer had them all
}

// openRawPipe opens a pipe of its own for topic with s and starts its raw
// consumer, counting in got.
func (e *benchEnv) openRawPipe(topic string, s rawSettings, got *rawCounter) (rawPipe, func(), error) {
	pipe, err := e.cfg.broker.pipe(topic, s)
	if err != nil {
		return nil, nil, err
	}
	stop, err := pipe.consume(got)
	if err != nil {
		pipe.close()
		return nil, nil, err
	}
	return pipe, func() { stop(); pipe.close() }, nil
}

// rawPublish measures, with s, the broker's confirmed-publish rate for
// persistent messages into a destination declared as the provider
// declares one, that a raw consumer drains meanwhile on its own
// connection, as the provider does: the conditions of the library's
// backlog drain, without the library.
func (e *benchEnv) rawPublish(n int, s rawSettings) (rawPublishResult, error) {
	var got rawCounter
	pipe, closePipe, err := e.openRawPipe("bench.rawmq", s, &got)
	if err != nil {
		return rawPublishResult{}, err
	}
	defer closePipe()
	body := e.body("bench.rawmq", 0)
	start := time.Now()
	took, err := rawPublishTo(pipe, n, func(i int) rawMsg {
		return rawMsg{id: "raw-" + strconv.Itoa(i), body: body}
	})
	if err != nil {
		return rawPublishResult{}, err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for got.Load() < int64(n) {
		if time.Now().After(deadline) {
			return rawPublishResult{}, fmt.Errorf("raw consumer got %d of %d", got.Load(), n)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	return rawPublishResult{confirmed: float64(n) / took.Seconds(), consumed: float64(n) / time.Since(start).Seconds()}, nil
}

// consumers preloads a service's destination, declared as the provider
// declares it, with m messages in the library's wire format twice: once
// drained by a raw consumer, once by the library with a no-op handler,
// both with the raw limits' settings (e.raw): the library's Prefetch is
// the raw consumer's. Each is timed from its first delivery to its last:
// the rate of consuming, without the start (the library's bus.Start
// connects, declares and reconciles its subscriptions first, which the
// raw consumer does not).
func (e *benchEnv) consumers(m int) (raw, lib float64, err error) {
	svc := e.service("cons")
	topic := "bench." + svc
	pipe, err := e.cfg.broker.servicePipe(svc, topic, e.raw)
	if err != nil {
		return 0, 0, err
	}
	defer pipe.close()
	preload := func() error {
		_, err := rawPublishTo(pipe, m, func(i int) rawMsg { return e.preloaded(topic, uint64(i)) })
		return err
	}
	// wait polls got until m are consumed; the rate counts from the first
	// poll that saw a delivery (what was consumed by then is left out).
	wait := func(got interface{ Load() int64 }, start time.Time) (float64, error) {
		deadline := start.Add(5 * time.Minute)
		var (
			first  time.Time
			before int64
		)
		for {
			n := got.Load()
			if n > 0 && first.IsZero() {
				first, before = time.Now(), n
			}
			if n >= int64(m) {
				break
			}
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("consumer phase: %d of %d consumed", n, m)
			}
			time.Sleep(time.Millisecond) // polling interval
		}
		if before >= int64(m) { // all came before the first poll saw one
			return float64(m) / time.Since(start).Seconds(), nil
		}
		return float64(int64(m)-before) / time.Since(first).Seconds(), nil
	}

	if err := preload(); err != nil {
		return 0, 0, err
	}
	var rawGot rawCounter
	start := time.Now()
	stop, err := pipe.consume(&rawGot)
	if err != nil {
		return 0, 0, err
	}
	raw, err = wait(&rawGot, start)
	stop()
	if err != nil {
		return 0, 0, err
	}

	if err := preload(); err != nil {
		return 0, 0, err
	}
	var libGot atomic.Int64
	bus := final.New(svc, e.db, e.cfg.broker.provider(e.cfg.broker.url()), e.options().WithPrefetch(e.raw.Prefetch))
	bus.Subscribe(topic).Handler(func(*final.Context) error { libGot.Add(1); return nil })
	start = time.Now()
	if err := bus.Start(); err != nil {
		return 0, 0, err
	}
	defer bus.Shutdown()
	lib, err = wait(&libGot, start)
	return raw, lib, err
}
