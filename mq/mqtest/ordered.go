package mqtest

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

// testOrderedAcrossConsumers: two instances of a service consume an
// Ordered topic, handling and acknowledging each delivery as it comes,
// until, midway, one of them stops handling and is closed while it holds
// deliveries it has not acknowledged; the other takes over. Across both:
//
//   - when message i+1 of a key is handled, message i of the key has been
//     acknowledged (so each key's first handlings are in publish order, and
//     the messages the stopped instance held are not overtaken);
//   - a message acknowledged is not handled again;
//   - every message is handled, and those the stopped instance held come
//     again marked redelivered.
//
// Which instance handles which key, and whether both get work, is not part
// of the contract and is not checked.
func testOrderedAcrossConsumers(t *testing.T, h Harness) {
	svc := h.Service(t)
	topic := svc + ".ordered"
	cfg := mq.Config{Service: svc, Ordered: []string{topic}}
	instances := []mq.IProvider{startConfig(t, h, cfg), startConfig(t, h, cfg)}
	pub := start(t, h, h.Service(t))

	const keys, perKey = 6, 20
	const total, stopAt = keys * perKey, keys * perKey / 2
	var (
		mu          sync.Mutex
		acked       = map[string]int{} // by key: how many of its messages are acknowledged
		ackedTotal  int
		victim      = -1                   // the instance that stopped
		held        []string               // what it held, as key/seq
		redelivered = map[string]bool{}    // key/seq: Redelivered() when last handled
		failure     = make(chan string, 1) // the first violation
		stopped     = make(chan struct{})  // the victim holds its deliveries
		complete    = make(chan struct{})  // every message acknowledged
		quit        = make(chan struct{})  // ends the handlers
		wg          sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		select {
		case failure <- fmt.Sprintf(format, args...):
		default:
		}
	}
	// handle checks d, received by instance i, and acknowledges it, unless
	// i is the first instance to receive one after midway: then i stops
	// there, holding it.
	handle := func(i int, d mq.Delivery) outcome {
		m, err := d.Message()
		if err != nil {
			fail("decode: %v", err)
			return failed
		}
		id := m.Key + "/" + string(m.Payload)
		seq, err := strconv.Atoi(string(m.Payload))
		if err != nil || m.Key == "" {
			fail("unexpected message %s %s", m.UUID, id)
			return failed
		}
		mu.Lock()
		defer mu.Unlock()
		if victim < 0 && ackedTotal >= stopAt {
			victim, held = i, append(held, id)
			return stopping
		}
		switch {
		case seq < acked[m.Key]:
			fail("instance %d handled %s again after it was acknowledged", i, id)
			return failed
		case seq > acked[m.Key]:
			fail("instance %d handled %s before %s/%d was acknowledged", i, id, m.Key, acked[m.Key])
			return failed
		}
		redelivered[id] = d.Redelivered()
		if err := d.Ack(); err != nil {
			fail("instance %d: Ack %s: %v", i, id, err)
			return failed
		}
		acked[m.Key]++
		if ackedTotal++; ackedTotal == total {
			close(complete)
		}
		return handled
	}
	for i, p := range instances {
		ch := consume(t, p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case d, ok := <-ch:
					if !ok {
						return
					}
					switch handle(i, d) {
					case handled:
						continue
					case stopping:
						hold(ch, func(d mq.Delivery) {
							if m, err := d.Message(); err == nil {
								mu.Lock()
								held = append(held, m.Key+"/"+string(m.Payload))
								mu.Unlock()
							}
						})
						close(stopped)
					}
					return
				case <-quit:
					return
				}
			}
		}()
	}
	defer wg.Wait()
	defer close(quit)

	for seq := 0; seq < perKey; seq++ {
		for k := 0; k < keys; k++ {
			m := message.New(topic, []byte(strconv.Itoa(seq)))
			m.Key = "key" + strconv.Itoa(k)
			publish(t, pub, m)
		}
	}
	deadline := time.After(wait)
	select {
	case <-stopped:
	case msg := <-failure:
		t.Fatal(msg)
	case <-deadline:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d messages acknowledged, and no instance received one since %d were", ackedTotal, total, stopAt)
	}
	mu.Lock()
	stoppedOne := victim
	mu.Unlock()
	if err := instances[stoppedOne].Close(); err != nil {
		t.Fatalf("Close instance %d: %v", stoppedOne, err)
	}
	select {
	case <-complete:
	case msg := <-failure:
		t.Fatal(msg)
	case <-deadline:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d messages acknowledged after instance %d stopped holding %s: the other did not take over",
			ackedTotal, total, stoppedOne, strings.Join(held, " "))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range held {
		if !redelivered[id] {
			t.Errorf("%s, held unacknowledged by the closed instance, came again not marked redelivered", id)
		}
	}
}

// outcome is what an instance of testOrderedAcrossConsumers did with a
// delivery.
type outcome int

const (
	handled  outcome = iota // acknowledged; the instance goes on
	stopping                // held; the instance stops
	failed                  // a violation, reported
)

// hold takes, without handling them, the deliveries ch has ready now, and
// gives each to keep.
func hold(ch <-chan mq.Delivery, keep func(mq.Delivery)) {
	for {
		select {
		case d, ok := <-ch:
			if !ok {
				return
			}
			keep(d)
		default:
			return
		}
	}
}
