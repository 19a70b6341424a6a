package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/faultnet"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
)

type drainResult struct {
	relayed      float64       // messages per second from the provider's reconnection until the outbox was empty (all confirmed)
	delivered    float64       // messages per second from the provider's reconnection until the subscriber had them all (the outbox's emptying is timed by relayed)
	reconnect    time.Duration // from restoring the link until the provider was connected again
	rssGrowthMiB float64       // peak RSS during the drain minus RSS when it began
	dups         int64         // deliveries of a message already handled, until the last was in
}

// drain builds a backlog of n committed messages while the broker is
// unreachable, restores the link, and times the relay draining it from
// the moment the provider is connected again, as the raw limit is timed
// from its first publish on a connection it opened first: the wait for
// the reconnection is the provider's backoff (at most a second), which
// drain reports apart. The link is cut by a gate in the provider's dialer
// where the broker's provider takes one (RabbitMQ), so that the drain runs
// on direct connections as the raw limit does; by a proxy otherwise, or
// with -drain-link proxy.
func (e *benchEnv) drain(n int) (drainResult, error) {
	e.settle()
	link, err := e.cutLink()
	if err != nil {
		return drainResult{}, err
	}
	defer link.close()

	svc := e.service("drain")
	topic := "bench." + svc
	tr := newTracker()
	provider := link.provider()
	ready, ok := provider.(mq.ReadyNotifier)
	if !ok {
		return drainResult{}, fmt.Errorf("drain: the %T cannot say when it is connected", provider)
	}
	bus := final.New(svc, e.db, provider, e.options())
	bus.Subscribe(topic).Handler(tr.handle)
	if err := bus.Start(); err != nil {
		return drainResult{}, err
	}
	defer bus.Shutdown()
	link.cut()

	const perTx = 100
	var next atomic.Uint64
	// Labelled apart from the drain: a -cpuprofile's phase=drain is the
	// bus's goroutines, phase=drain-backlog the inserts.
	_, err = labeled("drain-backlog", func() (struct{}, error) {
		for next.Load() < uint64(n) {
			tx, err := e.db.Begin()
			if err != nil {
				return struct{}{}, err
			}
			err = bus.Transaction(tx, func(txBus *final.TxBus) error {
				for k := 0; k < perTx && next.Load() < uint64(n); k++ {
					i := next.Add(1)
					var opts []message.PolicyOption
					if e.cfg.drainKeys > 0 {
						opts = append(opts, message.WithKey(strconv.FormatUint(i%uint64(e.cfg.drainKeys), 10)))
					}
					if err := txBus.Publish(topic, e.payload(i), opts...); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, nil
	})
	if err != nil {
		return drainResult{}, err
	}
	// Let the failed fast-path attempts settle and their backoff pass, so
	// that the drain measures the relay alone.
	time.Sleep(6 * time.Second) // OutboxRetryMax (5s) plus a margin: waiting out a backoff, not synchronising
	if got := tr.received.Load(); got != 0 {
		return drainResult{}, fmt.Errorf("drain: %d messages delivered while the broker was unreachable", got)
	}

	base := rssMiB()
	peak := base
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				peak = max(peak, rssMiB())
			}
		}
	}()
	restored := time.Now()
	link.restore()
	select {
	case <-ready.Ready():
	case <-time.After(time.Minute):
		close(stop)
		return drainResult{}, fmt.Errorf("drain: not connected again a minute after the link was restored")
	}
	start := time.Now()
	defer e.blockProfile()() // on every return: a drain that fails is the one to look at
	deadline := start.Add(5 * time.Minute)
	lastReport, lastLook := start, start
	var emptied, deliveredAt time.Duration
	for {
		// Whether the outbox is empty, looked at every 100 ms until every
		// message was delivered and every 5 ms after: the look must not load
		// the database it measures (a COUNT(*) of the backlog every 5 ms
		// took most of MariaDB's CPU, and halved the drain).
		delivered := tr.received.Load() >= int64(n)
		if delivered && deliveredAt == 0 {
			deliveredAt = time.Since(start)
		}
		if emptied == 0 && (delivered || time.Since(lastLook) >= 100*time.Millisecond) {
			lastLook = time.Now()
			if e.outboxEmpty(svc) {
				emptied = time.Since(start)
			}
		}
		if emptied > 0 && delivered {
			break
		}
		if time.Since(lastReport) >= time.Second {
			lastReport = time.Now()
			// No row count: a COUNT(*) of the backlog would load the
			// database being measured.
			fmt.Fprintf(os.Stderr, "finalbench:   drain t=%4.1fs delivered=%d\n", time.Since(start).Seconds(), tr.received.Load())
		}
		if time.Now().After(deadline) {
			close(stop)
			return drainResult{}, fmt.Errorf("drain: %d of %d delivered after 5 minutes", tr.received.Load(), n)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	close(stop)
	<-sampled
	return drainResult{
		relayed:      float64(n) / emptied.Seconds(),
		reconnect:    start.Sub(restored),
		delivered:    float64(n) / deliveredAt.Seconds(),
		rssGrowthMiB: peak - base,
		dups:         tr.dups.Load(),
	}, nil
}

// brokerLink is the link to the broker that drain cuts and restores, and
// the library's provider over it.
type brokerLink struct {
	cut, restore, close func()
	provider            func() mq.IProvider
}

// gatedBroker is a broker whose provider can dial through a faultnet.Gate.
type gatedBroker interface {
	gatedProvider(url string, g *faultnet.Gate) mq.IProvider
}

// cutLink returns the link drain cuts: a gate in the provider's dialer
// where the broker has one and -drain-link is not proxy, a proxy otherwise.
func (e *benchEnv) cutLink() (brokerLink, error) {
	b := e.cfg.broker
	if gb, ok := b.(gatedBroker); ok && e.cfg.drainLink != "proxy" {
		g := faultnet.NewGate()
		// Nothing to close: the bus's Shutdown closes what the gate dialled.
		return brokerLink{cut: g.Cut, restore: g.Restore, close: func() {},
			provider: func() mq.IProvider { return gb.gatedProvider(b.url(), g) }}, nil
	}
	u, err := url.Parse(b.url())
	if err != nil {
		return brokerLink{}, fmt.Errorf("drain: the broker's URL: %w", err)
	}
	proxy, err := faultnet.NewProxy(u.Host)
	if err != nil {
		return brokerLink{}, err
	}
	u.Host = proxy.Addr()
	return brokerLink{cut: proxy.Cut, restore: proxy.Restore, close: proxy.Close,
		provider: func() mq.IProvider { return b.provider(u.String()) }}, nil
}

// rssMiB is the process's resident set size.
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// blockProfile starts recording where goroutines wait (-blockprofile), and
// returns what stops it and writes the profile: nothing without the flag.
// The runtime's profile keeps what it recorded, so the file written after a
// later drain holds every drain's.
func (e *benchEnv) blockProfile() (stop func()) {
	file := e.cfg.blockprofile
	if file == "" {
		return func() {}
	}
	runtime.SetBlockProfileRate(int(10 * time.Microsecond))
	return func() {
		runtime.SetBlockProfileRate(0)
		f, err := os.Create(file)
		if err == nil {
			err = errors.Join(pprof.Lookup("block").WriteTo(f, 0), f.Close())
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "finalbench: block profile: %v\n", err)
		}
	}
}
