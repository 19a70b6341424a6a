package middleware

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/finalbus/final"
)

// Throttle lets at most perSecond messages a second into the rest of the
// chain, across all workers, with bursts of up to burst (0 means 1). A
// message waits for its turn, or gives up with the context's error when
// the delivery's context ends (at Shutdown).
//
// perSecond must be positive (math.Inf(1) means no limit) and burst not
// negative; NewThrottle reports other values. Throttle keeps its signature
// for constant arguments: given invalid ones, it returns a middleware that
// fails every message with NewThrottle's error, as a permanent failure, so
// that each is dead-lettered at once with the reason instead of being let
// through unthrottled (replay them once the arguments are fixed).
func Throttle(perSecond float64, burst int) final.HandlerFunc {
	mw, err := NewThrottle(perSecond, burst)
	if err != nil {
		return func(c *final.Context) error { return final.Permanent(err) }
	}
	return mw
}

// NewThrottle is Throttle that refuses invalid arguments, with an error
// wrapping final.ErrInvalidOption that names the argument: a perSecond
// that is not positive, or so small that one token takes longer than
// time.Duration can hold, and a negative burst.
func NewThrottle(perSecond float64, burst int) (final.HandlerFunc, error) {
	every := float64(time.Second) / perSecond
	switch {
	case !(perSecond > 0): // NaN included
		return nil, fmt.Errorf("middleware: Throttle: perSecond = %v, want > 0: %w", perSecond, final.ErrInvalidOption)
	case every >= math.MaxInt64:
		return nil, fmt.Errorf("middleware: Throttle: perSecond = %v, want at least one message every %v: %w",
			perSecond, time.Duration(math.MaxInt64), final.ErrInvalidOption)
	case burst < 0:
		return nil, fmt.Errorf("middleware: Throttle: burst = %d, want >= 0: %w", burst, final.ErrInvalidOption)
	}
	l := &limiter{every: time.Duration(every), burst: max(burst, 1)}
	return func(c *final.Context) error {
		if err := l.wait(c); err != nil {
			return err
		}
		return c.Next()
	}, nil
}

// limiter is a token bucket kept as the time the next token is due.
type limiter struct {
	every time.Duration
	burst int

	mu   sync.Mutex
	next time.Time // when the bucket is empty again; tokens accrue from it
}

func (l *limiter) reserve(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	earliest := now.Add(-time.Duration(l.burst-1) * l.every) // a full bucket
	if l.next.Before(earliest) {
		l.next = earliest
	}
	wait := l.next.Sub(now)
	l.next = l.next.Add(l.every)
	return max(wait, 0)
}

func (l *limiter) wait(c *final.Context) error {
	d := l.reserve(time.Now())
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.Context().Done():
		return c.Context().Err()
	}
}
