package final

import (
	"testing"
	"time"
)

// Left at 0, Prefetch is DefaultPrefetch unless the retry waits would not
// fit the broker's consumer timeout; it is then halved, never below the
// default it had before (4 × NumSubscriber), so options that started with
// that default still start.
func TestDefaultPrefetchFitsTheHoldLimit(t *testing.T) {
	const limit = 30 * time.Minute // RabbitMQ's consumer_timeout
	cases := []struct {
		name     string
		interval time.Duration // RetryInterval, with RetryCount 3: 7 x this in waits per message
		ordered  bool
		limit    time.Duration
		want     int
	}{
		{"defaults", 100 * time.Millisecond, false, limit, DefaultPrefetch},
		{"defaults, ordered", 100 * time.Millisecond, true, limit, DefaultPrefetch},
		{"no hold limit", time.Hour, true, 0, DefaultPrefetch},
		// 70 s of waits: 33 rounds of them (256 / 8 + 1) exceed 27 min, 17 do not.
		{"10s retries", 10 * time.Second, false, limit, 128},
		// Ordered: up to Prefetch rounds of 7 s; 256 of them (30 min) exceed 27 min, 128 do not.
		{"1s retries, ordered", time.Second, true, limit, 128},
		// Nothing down to the floor fits: the floor, which Start then refuses as before.
		{"1 min retries", time.Minute, false, limit, 32},
	}
	for _, c := range cases {
		o := DefaultOptions().WithRetryInterval(c.interval)
		if err := o.validate(); err != nil {
			t.Fatal(err)
		}
		if got := o.defaultPrefetch(c.limit, c.ordered); got != c.want {
			t.Errorf("%s: default Prefetch %d, want %d", c.name, got, c.want)
		}
	}
}
