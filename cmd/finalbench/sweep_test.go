package main

import (
	"errors"
	"strings"
	"sync"
	"testing"
)

func TestRawSweepGrid(t *testing.T) {
	grid := rawSweepGrid()
	if len(grid) != 12 {
		t.Fatalf("%d points, want 12", len(grid))
	}
	seen := map[rawSettings]bool{}
	for _, s := range grid {
		if seen[s] {
			t.Errorf("%s twice", s)
		}
		seen[s] = true
		if s.Window <= 0 || s.Prefetch <= 0 || s.Publishers <= 0 {
			t.Errorf("%s: every knob must be positive", s)
		}
	}
	if !seen[defaultRawSettings] {
		t.Errorf("the defaults %s are not a point of the sweep, which could then do worse than without it", defaultRawSettings)
	}
}

func TestBestPoints(t *testing.T) {
	pt := func(w, p, n int, confirmed, consumed float64) rawSweepPoint {
		return rawSweepPoint{rawSettings: rawSettings{Window: w, Prefetch: p, Publishers: n}, Messages: 20000,
			Confirmed: confirmed, Consumed: consumed}
	}
	failed := pt(16384, 256, 2, 0, 0)
	failed.Err = "raw publish nacked"
	for _, tc := range []struct {
		name                string
		pts                 []rawSweepPoint
		consume, confirm    rawSettings
		wantOK              bool
		consumed, confirmed float64
	}{
		{name: "none", wantOK: false},
		{name: "every point failed", pts: []rawSweepPoint{failed}, wantOK: false},
		{
			name:    "the best consumed wins, the best confirmed is its own",
			pts:     []rawSweepPoint{pt(256, 32, 1, 9000, 5000), pt(2048, 256, 1, 19000, 12000), pt(16384, 256, 2, 15000, 13800)},
			consume: rawSettings{16384, 256, 2}, confirm: rawSettings{2048, 256, 1}, wantOK: true,
			consumed: 13800, confirmed: 19000,
		},
		{
			name:    "a failed point never wins",
			pts:     []rawSweepPoint{pt(256, 32, 1, 9000, 5000), failed},
			consume: rawSettings{256, 32, 1}, confirm: rawSettings{256, 32, 1}, wantOK: true,
			consumed: 5000, confirmed: 9000,
		},
		{
			name:    "a tie goes to the earlier, smaller settings",
			pts:     []rawSweepPoint{pt(256, 32, 1, 9000, 5000), pt(2048, 32, 1, 9000, 5000)},
			consume: rawSettings{256, 32, 1}, confirm: rawSettings{256, 32, 1}, wantOK: true,
			consumed: 5000, confirmed: 9000,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			consume, confirm, ok := bestPoints(tc.pts)
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tc.wantOK)
			}
			if !ok {
				return
			}
			if consume.rawSettings != tc.consume || consume.Consumed != tc.consumed {
				t.Errorf("best publish and consume: %s at %.0f, want %s at %.0f", consume.rawSettings, consume.Consumed, tc.consume, tc.consumed)
			}
			if confirm.rawSettings != tc.confirm || confirm.Confirmed != tc.confirmed {
				t.Errorf("best confirmed: %s at %.0f, want %s at %.0f", confirm.rawSettings, confirm.Confirmed, tc.confirm, tc.confirmed)
			}
		})
	}
}

func TestRawSettingsStrings(t *testing.T) {
	s := rawSettings{Window: 16384, Prefetch: 256, Publishers: 2}
	if got, want := s.String(), "window 16384, prefetch 256, 2 publishers"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := defaultRawSettings.String(), "window 2048, prefetch 32, 1 publisher"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for b, want := range map[broker]string{
		rabbitMQ{}:  "up to 16384 outstanding per channel on 2 publishing channels of one connection; consumer prefetch 256",
		jetStream{}: "up to 16384 acks outstanding per publisher, 2 publishing goroutines on one connection; pull consumer (Consume, batches of 256)",
	} {
		if got := b.settings(s); !strings.Contains(got, want) {
			t.Errorf("%s settings = %q, want it to contain %q", b.name(), got, want)
		}
	}
}

func TestRawSettingsFlag(t *testing.T) {
	s := rawSettings{Window: 2048, Prefetch: 256, Publishers: 2}
	got, err := parseRawSettings(s.flag())
	if err != nil || got != s {
		t.Fatalf("parseRawSettings(%q) = %v, %v; want %v", s.flag(), got, err, s)
	}
	if got, err := parseRawSettings(" 256, 32 ,1"); err != nil || got != (rawSettings{Window: 256, Prefetch: 32, Publishers: 1}) {
		t.Errorf("spaces: %v, %v", got, err)
	}
	for _, bad := range []string{"", "2048,256", "2048,256,1,1", "2048,0,1", "a,256,1", "-1,256,1"} {
		if _, err := parseRawSettings(bad); err == nil {
			t.Errorf("parseRawSettings(%q) took it", bad)
		}
	}
}

// TestRawSettingsInReport checks that the table and results.json name the
// winning settings and mark the sweep's best points.
func TestRawSettingsInReport(t *testing.T) {
	best := rawSettings{Window: 16384, Prefetch: 256, Publishers: 2}
	r := &report{RawSettings: &rawLimitSettings{
		Source:      "best publish-and-consume of a 2-point sweep of 20000 messages each",
		Best:        best,
		Described:   rabbitMQ{}.settings(best),
		ConfirmedBy: defaultRawSettings,
		ConsumedBy:  best,
		Sweep: []rawSweepPoint{
			{rawSettings: defaultRawSettings, Messages: 20000, Confirmed: 19000, Consumed: 7000},
			{rawSettings: best, Messages: 20000, Confirmed: 15000, Consumed: 13800},
		},
	}}
	table := r.table()
	for _, want := range []string{
		"raw:      window 16384, prefetch 256, 2 publishers (best publish-and-consume of a 2-point sweep",
		"raw confirmed-publish limit with window 2048, prefetch 32, 1 publisher",
		"| 2048 | 32 | 1 | 19000 | 7000 | + |",
		"| 16384 | 256 | 2 | 15000 | 13800 | * |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "publish-and-consume limit with") {
		t.Errorf("the table names other settings for the publish-and-consume limit, which had the best:\n%s", table)
	}
	if got := r.rawSetup(); got != "; window 16384, prefetch 256, 2 publishers" {
		t.Errorf("rawSetup() = %q", got)
	}
}

// fakePipe is a test double of a broker's pipe: its publishers record
// which messages each published, and confirm them at once, or fail the
// confirm of message nack.
type fakePipe struct {
	s    rawSettings
	nack int // the index whose confirm fails; -1: none
	mu   sync.Mutex
	by   map[int]int // message index to publisher
}

type fakePublisher struct {
	p *fakePipe
	k int
}

func (p *fakePipe) settings() rawSettings { return p.s }

func (p *fakePipe) publishers() []rawPublisher {
	pubs := make([]rawPublisher, p.s.Publishers)
	for k := range pubs {
		pubs[k] = fakePublisher{p: p, k: k}
	}
	return pubs
}

func (p *fakePipe) consume(*rawCounter) (func(), error) { return func() {}, nil }

func (p *fakePipe) close() {}

func (f fakePublisher) publish(m rawMsg) (func() error, error) {
	i := int(m.body[0])<<8 | int(m.body[1])
	f.p.mu.Lock()
	f.p.by[i] = f.k
	f.p.mu.Unlock()
	return func() error {
		if i == f.p.nack {
			return errNacked
		}
		return nil
	}, nil
}

// TestRawPublishToSplits checks that the n messages split into one
// contiguous range per publisher, each published once, and that a failed
// confirm fails the publish.
func TestRawPublishToSplits(t *testing.T) {
	msg := func(i int) rawMsg { return rawMsg{body: []byte{byte(i >> 8), byte(i)}} }
	for _, publishers := range []int{1, 2} {
		p := &fakePipe{s: rawSettings{Window: 8, Prefetch: 1, Publishers: publishers}, nack: -1, by: map[int]int{}}
		const n = 1001
		if _, err := rawPublishTo(p, n, msg); err != nil {
			t.Fatalf("%d publishers: %v", publishers, err)
		}
		if len(p.by) != n {
			t.Fatalf("%d publishers: %d of %d messages published", publishers, len(p.by), n)
		}
		for k := 0; k < publishers; k++ {
			for i := k * n / publishers; i < (k+1)*n/publishers; i++ {
				if p.by[i] != k {
					t.Fatalf("%d publishers: message %d by publisher %d, want %d", publishers, i, p.by[i], k)
				}
			}
		}
	}
	p := &fakePipe{s: rawSettings{Window: 8, Prefetch: 1, Publishers: 2}, nack: 700, by: map[int]int{}}
	if _, err := rawPublishTo(p, 1000, msg); !errors.Is(err, errNacked) {
		t.Fatalf("with message 700 nacked: %v, want errNacked", err)
	}
}

func TestBetterLimits(t *testing.T) {
	sa, sb := rawSettings{256, 256, 1}, rawSettings{16384, 256, 1}
	for _, tc := range []struct {
		name                    string
		a, b                    rawPublishResult
		want                    rawPublishResult
		confirmedBy, consumedBy rawSettings
	}{
		{"a better at both", rawPublishResult{20000, 15000}, rawPublishResult{19000, 14000}, rawPublishResult{20000, 15000}, sa, sa},
		{"b confirms faster", rawPublishResult{22000, 20000}, rawPublishResult{38000, 19000}, rawPublishResult{38000, 20000}, sb, sa},
		{"b better at both", rawPublishResult{22000, 20000}, rawPublishResult{38000, 32000}, rawPublishResult{38000, 32000}, sb, sb},
		{"a tie goes to a", rawPublishResult{20000, 15000}, rawPublishResult{20000, 15000}, rawPublishResult{20000, 15000}, sa, sa},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, confirmedBy, consumedBy := betterLimits(tc.a, tc.b, sa, sb)
			if got != tc.want || confirmedBy != tc.confirmedBy || consumedBy != tc.consumedBy {
				t.Errorf("got %+v by %s / %s, want %+v by %s / %s", got, confirmedBy, consumedBy, tc.want, tc.confirmedBy, tc.consumedBy)
			}
		})
	}
}
