package middleware

import (
	"sync"
	"time"

	"github.com/finalbus/final"
)

// Throttle lets at most perSecond messages a second into the rest of the
// chain, across all workers, with bursts of up to burst (at least 1). A
// message waits for its turn, or gives up with the context's error when
// the delivery's context ends (at Shutdown).
func Throttle(perSecond float64, burst int) final.HandlerFunc {
	l := &limiter{every: time.Duration(float64(time.Second) / perSecond), burst: max(burst, 1)}
	return func(c *final.Context) error {
		if err := l.wait(c); err != nil {
			return err
		}
		return c.Next()
	}
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
