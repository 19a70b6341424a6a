// Command tracewaits lists, from a Go execution trace (finalbench's -trace
// or -flight-lag), the stretches in which goroutines waited, were runnable
// without running, or sat in a system call, for at least -min: where a
// stall was, goroutine by goroutine, and what each was waiting on.
//
//	go run ./bench/tracewaits -min 25ms -from 4.5 -to 4.8 -skip 'produce.func1|returnTracker' FILE
//
// (run from bench/tracewaits, a module of its own: it needs
// golang.org/x/exp/trace, which the library's module does not). Each line:
// the stretch's start in seconds from the trace's first event, its length,
// the goroutine, its state, and the reason and innermost frames outside the
// runtime when it entered that state. The trace's generations (about one a
// second) cut stretches that cross them.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// stretch is a time a goroutine spent out of the running state.
type stretch struct {
	g     trace.GoID
	state trace.GoState
	from  trace.Time
	dur   time.Duration
	why   string
}

// goroutine is what is known of one goroutine while reading.
type goroutine struct {
	since trace.Time
	state trace.GoState
	why   string
}

func main() {
	least := flag.Duration("min", 25*time.Millisecond, "list stretches at least this long")
	from := flag.Float64("from", 0, "list stretches starting at or after this many seconds into the trace")
	to := flag.Float64("to", 0, "... and before this many (0: the end)")
	skip := flag.String("skip", "", "leave out stretches whose reason or frames match this regular expression")
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: tracewaits [-min D] [-from S] [-to S] [-skip RE] TRACE")
	}
	var skipRE *regexp.Regexp
	if *skip != "" {
		skipRE = regexp.MustCompile(*skip)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	stretches, first, err := read(f, *least)
	if err != nil {
		log.Fatal(err)
	}
	sort.Slice(stretches, func(i, j int) bool { return stretches[i].from < stretches[j].from })
	for _, s := range stretches {
		at := float64(s.from-first) / 1e9
		if at < *from || *to > 0 && at >= *to || skipRE != nil && skipRE.MatchString(s.why) {
			continue
		}
		fmt.Printf("%8.3f s %8.1f ms g%-7d %-9s %s\n", at, float64(s.dur)/1e6, s.g, s.state, s.why)
	}
}

// read returns every stretch of at least least, and the time of the trace's
// first event.
func read(r io.Reader, least time.Duration) ([]stretch, trace.Time, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, 0, err
	}
	var (
		out   []stretch
		first trace.Time
		gs    = map[trace.GoID]*goroutine{}
	)
	for {
		ev, err := tr.ReadEvent()
		if err == io.EOF {
			return out, first, nil
		}
		if err != nil {
			return nil, 0, err
		}
		if first == 0 {
			first = ev.Time()
		}
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		old, now := st.Goroutine()
		g := gs[id]
		if g == nil {
			g = &goroutine{since: ev.Time(), state: old}
			gs[id] = g
		}
		switch g.state {
		case trace.GoWaiting, trace.GoRunnable, trace.GoSyscall:
			if d := time.Duration(ev.Time() - g.since); d >= least {
				out = append(out, stretch{g: id, state: g.state, from: g.since, dur: d, why: g.why})
			}
		}
		stack := ev.Stack()
		if st.Stack != trace.NoStack {
			stack = st.Stack
		}
		g.state, g.since, g.why = now, ev.Time(), st.Reason+": "+frames(stack, 5)
	}
}

// frames is the innermost n frames of s outside the runtime.
func frames(s trace.Stack, n int) string {
	var out []string
	for f := range s.Frames() {
		if strings.HasPrefix(f.Func, "runtime.") || strings.HasPrefix(f.Func, "internal/") {
			continue
		}
		out = append(out, fmt.Sprintf("%s:%d", f.Func[strings.LastIndex(f.Func, "/")+1:], f.Line))
		if len(out) == n {
			break
		}
	}
	return strings.Join(out, " < ")
}
