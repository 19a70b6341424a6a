package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// rawSettings are how a raw limit publishes and consumes: the knobs on
// which raw broker figures depend most, which the raw sweep tunes so that
// a limit is the best the broker does here, not one arbitrary setting.
type rawSettings struct {
	// Window bounds the confirms outstanding per publisher (AMQP: deferred
	// confirms; JetStream: async publish acks).
	Window int `json:"window"`
	// Prefetch is the raw consumer's prefetch (AMQP) or pull batch
	// (JetStream).
	Prefetch int `json:"prefetch"`
	// Publishers share the messages (AMQP: a confirming channel each;
	// JetStream: a goroutine each on one connection).
	Publishers int `json:"publishers"`
}

// defaultRawSettings are the raw limits' settings without the sweep
// (-raw-sweep=false): what finalbench used before it swept.
var defaultRawSettings = rawSettings{Window: rawWindow, Prefetch: rawBatch, Publishers: 1}

// flag is s as -raw takes it: "window,prefetch,publishers".
func (s rawSettings) flag() string {
	return fmt.Sprintf("%d,%d,%d", s.Window, s.Prefetch, s.Publishers)
}

// parseRawSettings reads the form of flag; each number must be positive.
func parseRawSettings(v string) (rawSettings, error) {
	var s rawSettings
	parts := strings.Split(v, ",")
	if len(parts) != 3 {
		return s, fmt.Errorf("%q: want window,prefetch,publishers", v)
	}
	for i, dst := range []*int{&s.Window, &s.Prefetch, &s.Publishers} {
		n, err := strconv.Atoi(strings.TrimSpace(parts[i]))
		if err != nil || n <= 0 {
			return s, fmt.Errorf("%q: want three positive numbers, window,prefetch,publishers", v)
		}
		*dst = n
	}
	return s, nil
}

func (s rawSettings) String() string {
	return fmt.Sprintf("window %d, prefetch %d, %s", s.Window, s.Prefetch, plural(s.Publishers, "publisher"))
}

// plural is "1 channel", "2 channels".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// The sweep's axes: 3 windows x 2 prefetches x 1 or 2 publishers, 12
// points, few enough for each to be short. The windows span a few round
// trips' worth to effectively unbounded pipelining.
var (
	sweepWindows    = []int{256, 2048, 16384}
	sweepPrefetches = []int{32, 256}
	sweepPublishers = []int{1, 2}
)

// sweepMessages caps the messages of one sweep point: enough for a rate
// of a few seconds, short enough for 12 points.
const sweepMessages = 20000

// rawSweepGrid is the sweep's points, the smaller settings first.
func rawSweepGrid() []rawSettings {
	var grid []rawSettings
	for _, w := range sweepWindows {
		for _, p := range sweepPrefetches {
			for _, n := range sweepPublishers {
				grid = append(grid, rawSettings{Window: w, Prefetch: p, Publishers: n})
			}
		}
	}
	return grid
}

// rawSweepPoint is one point of the sweep: the raw confirmed publish and
// consume of Messages messages with its settings.
type rawSweepPoint struct {
	rawSettings
	Messages  int     `json:"messages"`
	Confirmed float64 `json:"confirmed_msgs_per_s,omitempty"`
	Consumed  float64 `json:"consumed_msgs_per_s,omitempty"`
	Err       string  `json:"error,omitempty"` // the point failed; the others still count
}

// bestPoints returns the point with the best publish-and-consume rate and
// the point with the best confirmed rate, the earlier (smaller settings)
// on a tie, ignoring failed points; ok is false when every point failed.
func bestPoints(pts []rawSweepPoint) (consume, confirm rawSweepPoint, ok bool) {
	for _, p := range pts {
		if p.Err != "" {
			continue
		}
		if !ok || p.Consumed > consume.Consumed {
			consume = p
		}
		if !ok || p.Confirmed > confirm.Confirmed {
			confirm = p
		}
		ok = true
	}
	return consume, confirm, ok
}

// rawLimitSettings is, for the report, how the raw limits published and
// consumed and how those settings were chosen.
type rawLimitSettings struct {
	// Source says how Best was chosen: a sweep, or the defaults.
	Source string `json:"source"`
	// Best has the sweep's best publish-and-consume rate: the raw DB +
	// broker limit and the raw consumer use it.
	Best rawSettings `json:"best"`
	// Described is the broker's description of Best.
	Described string `json:"described"`
	// ConfirmedBy and ConsumedBy gave the raw confirmed-publish limit and
	// the raw publish-and-consume limit: Best, or the sweep's best
	// confirmed rate, whichever did better in the re-measure with the
	// full backlog (before it, the sweep's best of each).
	ConfirmedBy rawSettings     `json:"confirmed_by"`
	ConsumedBy  rawSettings     `json:"consumed_by"`
	Sweep       []rawSweepPoint `json:"sweep,omitempty"`
}

// chooseRawSettings sets the settings of every raw limit that uses the
// broker: with -raw-sweep, the best of a sweep of short raw publish and
// consume runs; without, the defaults. It runs before any such limit, so
// that the raw DB + broker limit has the sweep's settings even in a run
// whose phases measure no raw publish of their own.
func (r *report) chooseRawSettings(env *benchEnv, say func(string, ...any)) error {
	c := env.cfg
	rs := &rawLimitSettings{Source: "-raw, with -raw-sweep=false", Best: c.rawFixed,
		ConfirmedBy: c.rawFixed, ConsumedBy: c.rawFixed}
	if c.rawSweep {
		grid := rawSweepGrid()
		m := min(c.backlog, sweepMessages)
		say("raw %s sweep: %d points of %d messages (confirm window x prefetch x publishers)", c.broker.name(), len(grid), m)
		var errs []error
		for _, s := range grid {
			pt := rawSweepPoint{rawSettings: s, Messages: m}
			res, err := env.rawPublish(m, s)
			if err != nil {
				pt.Err = err.Error()
				errs = append(errs, fmt.Errorf("%s: %w", s, err))
				say("  %-40s failed: %v", s, err)
			} else {
				pt.Confirmed, pt.Consumed = res.confirmed, res.consumed
				say("  %-40s confirmed %6.0f msg/s, consumed %6.0f msg/s", s, res.confirmed, res.consumed)
			}
			rs.Sweep = append(rs.Sweep, pt)
		}
		consume, confirm, ok := bestPoints(rs.Sweep)
		if !ok {
			return fmt.Errorf("raw sweep: every point failed: %w", errors.Join(errs...))
		}
		rs.Best, rs.ConsumedBy, rs.ConfirmedBy = consume.rawSettings, consume.rawSettings, confirm.rawSettings
		rs.Source = fmt.Sprintf("best publish-and-consume of a %d-point sweep of %d messages each", len(grid), m)
	}
	rs.Described = c.broker.settings(rs.Best)
	r.RawSettings = rs
	env.raw = rs.Best
	say("raw %s settings: %s (%s)", c.broker.name(), rs.Best, rs.Source)
	if rs.ConfirmedBy != rs.Best {
		say("  best confirmed rate: %s", rs.ConfirmedBy)
	}
	return nil
}

// rawPublishLimit measures the raw confirmed publish and consume of n
// messages with the best settings, and again with the settings best for
// the confirmed rate when the sweep found others: each limit is the
// better of the two runs, for a limit is the best the broker does.
func (r *report) rawPublishLimit(env *benchEnv, n int, say func(string, ...any)) (rawPublishResult, error) {
	c := env.cfg
	rs := r.RawSettings
	say("raw %s confirmed publishes and consume, %d messages: %s", c.broker.name(), n, rs.Described)
	res, err := env.rawPublish(n, rs.Best)
	if err != nil {
		return rawPublishResult{}, err
	}
	say("  confirmed %.0f msg/s, consumed %.0f msg/s", res.confirmed, res.consumed)
	if other := rs.ConfirmedBy; other != rs.Best {
		say("raw %s confirmed publishes and consume, %d messages, with the sweep's best confirmed settings: %s", c.broker.name(), n, other)
		again, err := env.rawPublish(n, other)
		if err != nil {
			return rawPublishResult{}, err
		}
		say("  confirmed %.0f msg/s, consumed %.0f msg/s", again.confirmed, again.consumed)
		res, rs.ConfirmedBy, rs.ConsumedBy = betterLimits(res, again, rs.Best, other)
	}
	if rs.Sweep != nil {
		rs.Source += fmt.Sprintf("; limits re-measured with %d messages", n)
	}
	return res, nil
}

// betterLimits takes each limit from the better of two runs, a with
// settings sa and b with sb, and returns the settings that gave each, a's
// on a tie.
func betterLimits(a, b rawPublishResult, sa, sb rawSettings) (best rawPublishResult, confirmedBy, consumedBy rawSettings) {
	best, confirmedBy, consumedBy = a, sa, sa
	if b.confirmed > a.confirmed {
		best.confirmed, confirmedBy = b.confirmed, sb
	}
	if b.consumed > a.consumed {
		best.consumed, consumedBy = b.consumed, sb
	}
	return best, confirmedBy, consumedBy
}

// rawSettingsLines writes the raw limits' settings under the report's
// header, if a phase measured a raw limit on the broker.
func (r *report) rawSettingsLines(b *strings.Builder) {
	rs := r.RawSettings
	if rs == nil {
		return
	}
	fmt.Fprintf(b, "raw:      %s (%s)\n          %s\n", rs.Best, rs.Source, rs.Described)
	if rs.ConfirmedBy != rs.Best {
		fmt.Fprintf(b, "          raw confirmed-publish limit with %s\n", rs.ConfirmedBy)
	}
	if rs.ConsumedBy != rs.Best {
		fmt.Fprintf(b, "          raw publish-and-consume limit with %s\n", rs.ConsumedBy)
	}
}

// rawSweepTable writes the raw sweep's points, if it ran.
func (r *report) rawSweepTable(b *strings.Builder) {
	rs := r.RawSettings
	if rs == nil || len(rs.Sweep) == 0 {
		return
	}
	fmt.Fprintf(b, "\nraw broker sweep, %d messages a point (* best publish and consume, + best confirmed):\n\n", rs.Sweep[0].Messages)
	fmt.Fprintf(b, "| window | prefetch | publishers | confirmed msg/s | consumed msg/s |   |\n|---|---|---|---|---|---|\n")
	consume, confirm, _ := bestPoints(rs.Sweep)
	for _, p := range rs.Sweep {
		if p.Err != "" {
			fmt.Fprintf(b, "| %d | %d | %d | failed: %s | | |\n", p.Window, p.Prefetch, p.Publishers, p.Err)
			continue
		}
		mark := ""
		if p.rawSettings == consume.rawSettings {
			mark += "*"
		}
		if p.rawSettings == confirm.rawSettings {
			mark += "+"
		}
		fmt.Fprintf(b, "| %d | %d | %d | %.0f | %.0f | %s |\n", p.Window, p.Prefetch, p.Publishers, p.Confirmed, p.Consumed, mark)
	}
}

// rawSetup is the raw settings for the peers table's limit row.
func (r *report) rawSetup() string {
	if r.RawSettings == nil {
		return ""
	}
	return "; " + r.RawSettings.Best.String()
}
