// Command finalbench measures final against the limits of the database and
// the broker it runs on, side by side in one run: the raw commit rate of the
// same transaction without the library, the same transaction followed by a
// raw publish and consume (the most an outbox can reach here), the library's
// commit and end-to-end rates, commit-to-delivery latency, the raw
// confirmed-publish rate against the library's backlog drain, and consumer
// throughput against raw consumption. It prints a table and writes JSON and
// an SVG chart.
//
// -db chooses the database: mysql (MariaDB or MySQL, the default),
// postgres (through github.com/jackc/pgx/v5/stdlib) or sqlite (through
// modernc.org/sqlite, by default a new file under os.TempDir, removed at the
// end). Every phase does the same work on each: the raw transaction inserts
// the business row and -per-tx rows into a table of the outbox's shape, written as
// that database's store writes its rows.
//
// -broker chooses the broker: rabbitmq (the default) or nats (JetStream, at
// -nats). The raw limits use the broker's own client library alone
// (amqp091-go; nats.go's jetstream package) on what the provider declares
// (a durable queue; a file-storage stream and a durable pull consumer),
// and the library runs with mq/amqp or mq/nats (prefix "bench", whose
// streams are deleted at the end).
//
// A raw broker limit is the best the broker does here, not one setting:
// before the first phase that measures one, a raw confirmed publish and
// consume of min(-backlog, 20000) messages runs at each of 12 points
// (confirm window 256, 2048 or 16384 per publisher; consumer prefetch or
// pull batch 32 or 256; one or two publishers: AMQP channels, or JetStream
// goroutines), and the point with the best publish-and-consume rate sets
// the window, prefetch and publishers of the raw DB + broker limit, the
// raw consumer (and the library's Prefetch beside it) and the raw publish,
// which is re-measured with -backlog messages. The report prints the
// settings and the sweep. -raw-sweep=false skips the sweep for the
// defaults (window 2048, prefetch 32, one publisher).
//
//	go run ./cmd/finalbench                  # defaults: MariaDB, 8 producers, 256-byte payloads, 1 message per tx
//	go run ./cmd/finalbench -c 16 -size 1024 -per-tx 10 -out bench/results
//	go run ./cmd/finalbench -db postgres -out bench/postgres
//	go run ./cmd/finalbench -broker nats -out bench/nats
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/finalbus/final"
	"github.com/finalbus/final/mq"
)

type config struct {
	db           database
	broker       broker
	dsn, amqpURL string
	natsURL      string
	concurrency  int
	size         int
	perTx        int
	duration     time.Duration
	backlog      int
	drainKeys    int
	drainLink    string
	consume      int
	sweep        []int
	out          string
	phases       map[string]bool
	cpuprofile   string
	tracefile    string        // -trace: a runtime/trace of the whole run
	flightLag    time.Duration // -flight-lag: write the flight recorder's trace when a library delivery takes longer
	flight       *flight       // the flight recorder under -flight-lag; nil otherwise
	flightFull   bool          // -flight-full: the recorder watches the library runs other than the paced phase instead
	blockprofile string
	pacedRate    float64
	latencyLog   string        // -latency-log: a directory for each delivery's commit and latency in the paced phase and each commit round
	rounds       int           // the commit, drain and 10 msg/tx phases alternate the limit and the library this many times
	unconfirmed  int           // the library's MaxUnconfirmed
	heldClaims   int           // the library's OutboxHeldClaims
	prefetch     int           // the library's Prefetch (0: its default)
	queue        int           // the library's DispatchQueueSize
	scanAgo      time.Duration // the library's OutboxScanAgoTime
	ackLinger    time.Duration // the library's AckLinger
	pack         bool          // the library's PackMessages
	wire         mq.WireFormat // the library's Options.WireFormat
	peers        []string      // the peers of the peers phase
	peersDir     string        // the bench/peers module
	peerFlags    []string      // more flags for every peerbench run
	rawSweep     bool          // choose the raw limits' settings by a sweep
	ackBatch     int           // RabbitMQ: the library's amqp.WithAckBatch (-ack-batch; below 0 its default)
	rawCoalesce  bool          // RabbitMQ: the raw publishing connection coalesces its writes (-raw-coalesce)
	rawFixed     rawSettings   // the raw limits' settings without the sweep
	batch        bool          // several messages of a transaction in one insert (PublishMessages; the raw limit likewise)
	paceLibrary  float64       // pace the library's producers in the alternating rounds at this fraction of the round's limit commit rate (0: unpaced)
}

// phases in the order they run (peers before sweep); libonly and rawonly
// (the library's commit phase, or the raw DB + broker's, alone, for
// profiling) and peers (which builds the
// bench/peers module, downloading its dependencies on first use) run only
// when asked for.
var (
	defaultPhases = []string{"commit", "latency", "drain", "consume", "tx10", "sweep"}
	allPhases     = append(slices.Clone(defaultPhases), "libonly", "rawonly", "peers")
)

// maxBatchPerTx is the most messages per transaction that every store's
// multi-row insert writes in one statement (outbox/mysql prepares those of
// up to 16 rows).
const maxBatchPerTx = 16

func (c config) runs(phase string) bool { return c.phases[phase] }

// usesRawBroker says whether a phase to run measures a raw limit on the
// broker (the raw DB + broker limit, the raw publish, the raw consumer),
// which needs the raw settings chosen first.
func (c config) usesRawBroker() bool {
	for _, p := range []string{"commit", "latency", "drain", "consume", "tx10", "rawonly", "peers"} {
		if c.runs(p) {
			return true
		}
	}
	return false
}

func main() {
	var (
		c     config
		sweep string
	)
	dbName := flag.String("db", "mysql", "database: mysql, postgres or sqlite")
	flag.StringVar(&c.dsn, "dsn", "", "database DSN (default: $FINAL_MYSQL_DSN or root@tcp(127.0.0.1:3306)/test for mysql,\n"+
		"$FINAL_POSTGRES_DSN or postgres://postgres@127.0.0.1:5432/test?sslmode=disable for postgres,\n"+
		"a new file under os.TempDir with outbox/sqlite.DSNParams&_txlock=immediate for sqlite)")
	flag.StringVar(&c.amqpURL, "amqp", envOr("FINAL_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ URL")
	brokerName := flag.String("broker", "rabbitmq", "broker: rabbitmq or nats (JetStream)")
	flag.StringVar(&c.natsURL, "nats", envOr("FINAL_NATS_URL", "nats://127.0.0.1:4222"), "NATS URL, with -broker nats")
	flag.IntVar(&c.concurrency, "c", 8, "concurrent producers")
	flag.IntVar(&c.size, "size", 256, "payload bytes")
	flag.IntVar(&c.perTx, "per-tx", 1, "messages per transaction in the main phases (a 10-per-tx phase always runs too)")
	flag.DurationVar(&c.duration, "d", 10*time.Second, "length of each timed phase")
	flag.IntVar(&c.backlog, "backlog", 100000, "messages in the backlog-drain phase")
	flag.StringVar(&c.drainLink, "drain-link", "gate", "how the drain cuts the link to the broker while it builds the backlog: gate (a dialer that refuses, so that the drain runs on direct connections, as the raw limit's; RabbitMQ only, NATS always uses a proxy) or proxy (a TCP proxy in the process, which every byte of the drain then crosses, as the drain's figures before -drain-link were measured)")
	flag.IntVar(&c.drainKeys, "drain-keys", 0, "give the backlog's messages keys spread over this many keys (0: no keys), to measure the ordered relay")
	flag.IntVar(&c.consume, "consume", 50000, "messages in the consumer phase")
	flag.StringVar(&sweep, "sweep", "1,2,4,8,16", "producer counts for the chart (empty: no chart)")
	flag.StringVar(&c.out, "out", "bench/latest", "directory for results.json and throughput.svg (bench/latest is ignored by git: name a directory to keep a run)")
	phases := flag.String("phases", strings.Join(defaultPhases, ","), "phases to run: "+strings.Join(allPhases, ","))
	flag.BoolVar(&c.batch, "batch", true, "with more than one message per transaction, publish them with one TxBus.PublishMessages (one multi-row\n"+
		"INSERT where the store has it) and write the raw limit's rows with one multi-row INSERT; false: one Publish, and one raw INSERT, per message")
	flag.BoolVar(&c.rawSweep, "raw-sweep", true, "choose the raw broker limits' confirm window, consumer prefetch and publishers as the best of a\n"+
		"12-point sweep of raw publish and consume (false: the settings of -raw, for quick runs and profiling)")
	flag.IntVar(&c.ackBatch, "ack-batch", -1, "RabbitMQ: the library's amqp.WithAckBatch, the acks of handled deliveries that may wait unwritten (below 0: its default, amqp.DefaultAckBatch)")
	flag.BoolVar(&c.rawCoalesce, "raw-coalesce", true, "RabbitMQ: the raw limits' publishing connection coalesces its writes as the library's does (a publish does not wait for a\n"+
		"write system call of its own); false: amqp091-go's one write per publish, as it ships")
	rawFixed := flag.String("raw", defaultRawSettings.flag(), "the raw broker limits' confirm window, prefetch and publishers with -raw-sweep=false")
	flag.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.StringVar(&c.tracefile, "trace", "", "write an execution trace of the whole run to this file (go tool trace; -pprof=sched shows where\n"+
		"goroutines waited for a P once runnable): best with one short phase (-phases libonly -d 5s)")
	flag.DurationVar(&c.flightLag, "flight-lag", 0, "keep the last seconds of an execution trace in memory (runtime/trace's flight recorder) and write them\n"+
		"to flight.trace in -out the first time a message the library delivers in the paced latency phase (or, with -flight-full, in the other library runs)\n"+
		"took longer than this from commit (0: off): a stall seen goroutine by goroutine (bench/tracewaits)")
	flag.BoolVar(&c.flightFull, "flight-full", false, "with -flight-lag: it watches every library run but the paced latency phase (the commit and 10 msg/tx rounds,\n"+
		"libonly, the sweep) instead of that phase; set a lag above most of their deliveries (their p99 is tens to hundreds of ms)")
	flag.StringVar(&c.blockprofile, "blockprofile", "", "write a profile of where goroutines waited (channels, locks, selects; one sample per 10µs waited) during the\n"+
		"backlog drain, from the reconnection until every message was delivered and the outbox was empty, to this file (with -rounds, every round's drain together):\n"+
		"where a drain that does not use the whole machine waits")
	flag.StringVar(&c.latencyLog, "latency-log", "", "write each message's commit, delivery and latency (ms), for the limit and the library, to this directory:\n"+
		"paced-{limit,library}.tsv for the paced latency phase, rounds-Nmsg-R-{limit,library}.tsv for round R of the N msg/tx commit phases,\n"+
		"each with a .start file beside it: the producers' start as Unix seconds, which its times count from")
	flag.Float64Var(&c.pacedRate, "rate", 0, "tx/s of the paced latency phase (0: half the limit, raw DB + broker, when the commit phase runs, else half the raw database rate)")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds of the commit, drain and 10 msg/tx phases: each runs the limit and the library in turn, and the report gives\n"+
		"the pair of the round whose ratio is the median (the machine's speed drifts between phases as much as the gaps measured)")
	flag.IntVar(&c.unconfirmed, "max-unconfirmed", final.DefaultOptions().MaxUnconfirmed, "the library's MaxUnconfirmed")
	flag.IntVar(&c.queue, "dispatch-queue", final.DefaultOptions().DispatchQueueSize, "the library's DispatchQueueSize")
	flag.DurationVar(&c.scanAgo, "scan-ago", final.DefaultOptions().OutboxScanAgoTime, "the library's OutboxScanAgoTime")
	flag.DurationVar(&c.ackLinger, "ack-linger", final.DefaultOptions().AckLinger, "the library's AckLinger (at most half of -scan-ago)")
	flag.BoolVar(&c.pack, "pack", final.DefaultOptions().PackMessages, "the library's PackMessages: with -batch, a transaction's messages in one row (the limit then writes them in one row too)")
	flag.IntVar(&c.heldClaims, "held-claims", final.DefaultOptions().OutboxHeldClaims, "the library's OutboxHeldClaims (0: leased claims; applies to a store that can hold its claims)")
	flag.IntVar(&c.prefetch, "prefetch", final.DefaultOptions().Prefetch, "the library's Prefetch (0: its default, final.DefaultPrefetch unless the consumer timeout needs less)")
	flag.Float64Var(&c.paceLibrary, "pace-library", 0, "pace the library's producers in the commit and 10 msg/tx rounds at this fraction of the commit rate the limit reached\n"+
		"in the same round (0: unpaced, as fast as they go): a diagnostic, to see what the library delivers when it commits no more than the limit")
	wire := flag.String("wire", "envelope", "the library's wire format: envelope or cloudevents")
	replot := flag.String("replot", "", "redraw the chart of a saved results.json beside it, and exit")
	peers := flag.String("peers", "watermill,river", "the peers phase's systems, each run where it applies to -db (watermill: mysql, postgres; river: postgres)")
	flag.StringVar(&c.peersDir, "peers-dir", "bench/peers", "the bench/peers module, built by the peers phase")
	peerFlags := flag.String("peer-flags", "", "more flags for every peerbench run, space-separated (e.g. \"-river-workers 1000 -wm-poll 10ms\")")
	flag.Parse()
	for _, p := range strings.Split(*peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			if _, ok := peerDatabases[p]; !ok {
				log.Fatalf("unknown peer %q (have watermill, river)", p)
			}
			c.peers = append(c.peers, p)
		}
	}
	c.peerFlags = strings.Fields(*peerFlags)
	var err error
	if c.rawFixed, err = parseRawSettings(*rawFixed); err != nil {
		log.Fatalf("-raw: %v", err)
	}
	switch *wire {
	case "envelope":
		c.wire = mq.Envelope
	case "cloudevents":
		c.wire = mq.CloudEvents
	default:
		fmt.Fprintf(os.Stderr, "finalbench: -wire %q: want envelope or cloudevents\n", *wire)
		os.Exit(2)
	}
	if *replot != "" {
		if err := replotFile(*replot); err != nil {
			log.Fatal(err)
		}
		return
	}
	d, ok := databases[*dbName]
	if !ok {
		log.Fatalf("unknown -db %q (have mysql, postgres, sqlite)", *dbName)
	}
	c.db = d
	b, err := newBroker(*brokerName, c)
	if err != nil {
		log.Fatal(err)
	}
	c.broker = b
	c.phases = map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		if p = strings.TrimSpace(p); p != "" {
			if !slices.Contains(allPhases, p) {
				log.Fatalf("unknown phase %q (have %s)", p, strings.Join(allPhases, ","))
			}
			c.phases[p] = true
		}
	}
	if c.phases["peers"] && *brokerName != "rabbitmq" {
		// The peers publish to RabbitMQ (Watermill) or to no broker (River):
		// beside another broker's limits their ratios would compare nothing.
		log.Fatalf("the peers phase runs with -broker rabbitmq only")
	}
	for _, f := range strings.Split(sweep, ",") {
		if f = strings.TrimSpace(f); f != "" {
			n, err := strconv.Atoi(f)
			if err != nil || n <= 0 {
				log.Fatalf("bad -sweep entry %q", f)
			}
			c.sweep = append(c.sweep, n)
		}
	}
	if c.concurrency <= 0 || c.size <= 0 || c.perTx <= 0 || c.backlog <= 0 || c.consume <= 0 {
		log.Fatal("-c, -size, -per-tx, -backlog and -consume must be positive")
	}
	if c.drainLink != "gate" && c.drainLink != "proxy" {
		log.Fatalf("bad -drain-link %q: gate or proxy", c.drainLink)
	}
	if c.batch && c.perTx > maxBatchPerTx {
		// The stores write up to 16 rows in one statement, more in several;
		// the raw limit writes one.
		log.Fatalf("-batch compares one multi-row insert with the limit's: use -per-tx %d or less, or -batch=false", maxBatchPerTx)
	}
	if c.cpuprofile != "" {
		f, err := os.Create(c.cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if c.tracefile != "" {
		f, err := os.Create(c.tracefile)
		if err != nil {
			log.Fatal(err)
		}
		if err := trace.Start(f); err != nil {
			log.Fatal(err)
		}
		defer trace.Stop()
	}
	if c.flightFull && c.flightLag <= 0 {
		log.Fatal("finalbench: -flight-full needs -flight-lag")
	}
	if c.flightLag > 0 {
		if err := os.MkdirAll(c.out, 0o755); err != nil {
			log.Fatal(err)
		}
		f, err := startFlight(c.flightLag, filepath.Join(c.out, "flight.trace"))
		if err != nil {
			log.Fatal(err)
		}
		c.flight = f
		defer f.stop()
	}
	if err := run(c); err != nil {
		c.flight.stop()
		pprof.StopCPUProfile()
		trace.Stop()
		log.Fatal(err)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(c config) error {
	dsn, tmp, err := c.db.dsn(c.dsn)
	if err != nil {
		return err
	}
	if tmp != "" {
		defer os.RemoveAll(tmp)
	}
	db, err := sql.Open(c.db.driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(4 * (c.concurrency + 8))
	db.SetMaxIdleConns(4 * (c.concurrency + 8))
	if err := db.PingContext(context.Background()); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	env := &benchEnv{cfg: c, db: db}
	if err := env.setup(); err != nil {
		return err
	}
	defer env.teardown()

	r := &report{Machine: machine(), Config: c.describe(), Started: time.Now().UTC()}
	r.Database, r.Broker = env.versions()
	say := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "finalbench: "+format+"\n", args...) }

	if c.usesRawBroker() {
		if err := r.chooseRawSettings(env, say); err != nil {
			return err
		}
	}
	if c.runs("libonly") { // for profiling: the library's commit phase alone
		lib, err := env.library(c.concurrency, c.perTx, c.duration, 0, c.flightWatch(false))
		if err != nil {
			return err
		}
		say("library only: commit %.0f tx/s", lib.commitTx)
		return nil
	}
	if c.runs("rawonly") { // for profiling: the limit's commit phase alone
		stack, err := env.rawStack(c.concurrency, c.perTx, c.duration, 0)
		if err != nil {
			return err
		}
		say("raw DB + broker only: commit %.0f tx/s, end-to-end %.0f tx/s", stack.commitTx, stack.e2eTx)
		return nil
	}
	var rawTx float64
	if c.runs("commit") || c.runs("latency") || c.runs("peers") {
		say("raw database, %d producers, %d msg/tx", c.concurrency, c.perTx)
		rawTx = env.rawDB(c.concurrency, c.perTx, c.duration, 0)
		say("  %.0f tx/s", rawTx)
		r.measured.rawTx = rawTx
	}
	if err := r.commitPhases(env, rawTx, say); err != nil {
		return err
	}
	if err := r.brokerPhases(env, say); err != nil {
		return err
	}
	var peerSweeps map[string][]peerSweepPoint
	if c.runs("peers") {
		var err error
		if peerSweeps, err = r.peersPhase(env, say); err != nil {
			return err
		}
	}
	if c.runs("sweep") && len(c.sweep) > 0 {
		for _, n := range c.sweep {
			say("sweep: %d producers", n)
			rawN := env.rawDB(n, c.perTx, c.duration/3, 0)
			libN, err := env.library(n, c.perTx, c.duration/3, 0, c.flightWatch(false))
			if err != nil {
				return err
			}
			r.Sweep = append(r.Sweep, sweepPoint{Producers: n, RawTx: rawN, LibraryTx: libN.commitTx})
		}
		r.addPeerSweeps(peerSweeps)
	}
	r.Finished = time.Now().UTC()
	fmt.Println(r.table())
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	if err := r.writeJSON(filepath.Join(c.out, "results.json")); err != nil {
		return err
	}
	if len(r.Sweep) > 0 {
		if err := r.writeSVG(filepath.Join(c.out, "throughput.svg")); err != nil {
			return err
		}
	}
	say("wrote %s", c.out)
	return nil
}

// commitPhases measures the library's commit, end-to-end and latency
// figures against the raw database rate.
func (r *report) commitPhases(env *benchEnv, rawTx float64, say func(string, ...any)) error {
	c := env.cfg
	if c.runs("commit") {
		stack, lib, err := env.alternate(c.perTx, say)
		if err != nil {
			return err
		}
		r.measured.stack, r.measured.lib = &stack, &lib
		r.addRef("commit rate vs raw DB alone (tx/s)", lib.commitTx, rawTx, "the database's own rate, without a broker")
		r.addRef("raw DB + broker, no outbox (tx/s)", stack.commitTx, rawTx, "limit for an outbox on this box")
		r.add("commit rate vs that limit (tx/s)", lib.commitTx, stack.commitTx, ">= 0.90 x the limit", 0.90)
		r.add("end-to-end vs that limit (tx/s)", lib.e2eTx, stack.e2eTx, ">= 0.90 x the limit", 0.90)
		r.addLatency("latency p50 at full load (ms)", lib.lat.p50, 0)
		r.addLatency("latency p99 at full load (ms)", lib.lat.p99, 0)
		r.addLatency("latency max at full load (ms)", lib.lat.max, 0)
		r.addRef("p99 at full load vs the limit's (ms)", lib.lat.p99, stack.lat.p99,
			"raw DB + broker at full load, the same round, for reference")
	}
	if !c.runs("latency") {
		return nil
	}
	// Half the limit (raw DB + broker) when the commit phase measured it,
	// else half the raw database rate.
	half, label := rawTx/2, "half raw DB rate"
	if s := r.measured.stack; s != nil {
		half, label = s.commitTx/2, "half the limit"
	}
	if c.pacedRate > 0 {
		half, label = c.pacedRate, fmt.Sprintf("%.0f tx/s", c.pacedRate)
	}
	say("raw database + raw %s paced at %.0f tx/s", c.broker.name(), half)
	stackHalf, err := env.rawStack(c.concurrency, c.perTx, c.duration, half)
	if err != nil {
		return err
	}
	say("  commit to delivery p50 %.1f ms, p99 %.1f ms, max %.1f ms, %.0f tx/s", stackHalf.lat.p50, stackHalf.lat.p99, stackHalf.lat.max, stackHalf.commitTx)
	say("library paced at %.0f tx/s", half)
	halfRun, err := env.library(c.concurrency, c.perTx, c.duration, half, c.flightWatch(true))
	if err != nil {
		return err
	}
	say("  commit to handled p50 %.1f ms, p99 %.1f ms, max %.1f ms", halfRun.lat.p50, halfRun.lat.p99, halfRun.lat.max)
	if err := env.writeLatencyLogs("paced", stackHalf.tr, halfRun.tr); err != nil {
		return err
	}
	r.measured.paced = &pacedResult{rate: half, stack: stackHalf.lat, lib: halfRun.lat,
		stackTx: stackHalf.commitTx, libTx: halfRun.commitTx}
	r.add("paced commit rate (tx/s) at "+label, halfRun.commitTx, half, "reaches the paced rate", 0.97)
	r.addLatency("latency p50 at "+label+" (ms)", halfRun.lat.p50, 0)
	r.addLatency("latency p99 at "+label+" (ms)", halfRun.lat.p99, 10)
	r.addLatency("latency max at "+label+" (ms)", halfRun.lat.max, 0)
	r.addRef("p99 at "+label+" vs the limit's (ms)", halfRun.lat.p99, stackHalf.lat.p99,
		"raw DB + broker paced alike, for reference")
	return nil
}

// labeled runs f with the pprof label phase=name, which the goroutines it
// starts inherit: `go tool pprof -tagfocus phase=drain` shows one phase of
// a -cpuprofile.
func labeled[T any](name string, f func() (T, error)) (T, error) {
	var v T
	var err error
	pprof.Do(context.Background(), pprof.Labels("phase", name), func(context.Context) { v, err = f() })
	return v, err
}

// brokerPhases measures the drain, consumer and 10-per-transaction figures
// against the raw broker rates.
func (r *report) brokerPhases(env *benchEnv, say func(string, ...any)) error {
	c := env.cfg
	if !c.runs("drain") && !c.runs("consume") && !c.runs("tx10") {
		return nil
	}
	rawPub, err := labeled("raw-publish", func() (rawPublishResult, error) { return r.rawPublishLimit(env, c.backlog, say) })
	if err != nil {
		return err
	}
	r.measured.rawPub = &rawPub
	if c.runs("drain") {
		drain, rawDrain, err := env.alternateDrains(r.RawSettings.ConsumedBy, say)
		if err != nil {
			return err
		}
		r.measured.drain, r.measured.rawDrain = &drain, rawDrain.consumed
		r.add("backlog drain to broker (msg/s)", drain.relayed, rawDrain.confirmed, ">= 0.50 x raw confirmed publish", 0.50)
		r.add("backlog drain to subscriber (msg/s)", drain.delivered, rawDrain.consumed, ">= 0.80 x raw publish+consume", 0.80)
		r.addMax("RSS growth while draining (MiB)", drain.rssGrowthMiB, memoryBound(env.options(), c.size))
		say("the store alone: a backlog of %d claimed and deleted, no broker", c.backlog)
		storeRate, err := labeled("store-drain", func() (float64, error) { return env.storeDrain(c.backlog) })
		if err != nil {
			return err
		}
		say("  %.0f rows/s", storeRate)
		r.addRef("backlog drain vs the store alone (msg/s)", drain.delivered, storeRate,
			"claim + delete without a broker: the database's ceiling for a drain")
		r.addRef("backlog drain vs broker and store in series (msg/s)", drain.delivered, inSeries(rawDrain.consumed, storeRate),
			"model, not a bound: 1/(1/raw publish+consume + 1/store alone), the two jobs sharing the machine")
	}
	if c.runs("consume") {
		say("consumers: raw and library, %d messages, prefetch %d", c.consume, env.raw.Prefetch)
		var rawCons, libCons float64
		_, err := labeled("consume", func() (struct{}, error) {
			var err error
			rawCons, libCons, err = env.consumers(c.consume)
			return struct{}{}, err
		})
		if err != nil {
			return err
		}
		say("  raw %.0f msg/s, library %.0f msg/s", rawCons, libCons)
		r.add("consumer throughput (msg/s)", libCons, rawCons, ">= 0.70 x raw consumption", 0.70)
	}
	if c.runs("tx10") {
		say("10 messages per transaction")
		raw10 := env.rawDB(c.concurrency, 10, c.duration, 0)
		stack10, lib10, err := env.alternate(10, say)
		if err != nil {
			return err
		}
		// Messages per second end to end: until every message was handled
		// and, for the library, the outbox was empty. The commit rate would
		// count rows that a full dispatch queue left to the relay.
		say("  raw DB %.0f msg/s; raw DB + broker: end to end %.0f, handled under load %.0f msg/s; library: end to end %.0f, handled under load %.0f, commits %.0f msg/s, %d duplicates",
			raw10*10, stack10.e2eTx*10, stack10.loadMsgs, lib10.e2eTx*10, lib10.loadMsgs, lib10.commitTx*10, lib10.dups)
		limit10 := min(rawPub.confirmed, raw10*10)
		r.addRef("10 msg/tx: raw DB + broker (msg/s)", stack10.e2eTx*10, limit10, "limit for an outbox on this box, / min(raw publish, raw DB)")
		r.add("10 msg/tx: commits vs that limit (msg/s)", lib10.commitTx*10, stack10.commitTx*10, ">= 0.90 x the limit", 0.90)
		r.add("10 msg/tx: end to end vs that limit (msg/s)", lib10.e2eTx*10, stack10.e2eTx*10, ">= 0.90 x the limit", 0.90)
	}
	return nil
}

func (c config) describe() string {
	prefetch := strconv.Itoa(c.prefetch)
	if c.prefetch == 0 {
		prefetch = fmt.Sprintf("default (%d unless the consumer timeout needs less)", final.DefaultPrefetch)
	}
	d := fmt.Sprintf("producers=%d payload=%dB per-tx=%d batch=%v phase=%s backlog=%d consume=%d wire=%s broker=%s max-unconfirmed=%d held-claims=%d prefetch=%s",
		c.concurrency, c.size, c.perTx, c.batch, c.duration, c.backlog, c.consume, c.wire, c.broker.name(), c.unconfirmed, c.heldClaims, prefetch)
	if o := final.DefaultOptions(); c.queue != o.DispatchQueueSize || c.scanAgo != o.OutboxScanAgoTime {
		d += fmt.Sprintf(" dispatch-queue=%d scan-ago=%s", c.queue, c.scanAgo)
	}
	if !c.pack {
		d += " pack=false"
	}
	if c.ackBatch >= 0 {
		d += fmt.Sprintf(" ack-batch=%d", c.ackBatch)
	}
	if c.ackLinger != final.DefaultOptions().AckLinger {
		d += fmt.Sprintf(" ack-linger=%s", c.ackLinger)
	}
	if c.paceLibrary > 0 {
		d += fmt.Sprintf(" pace-library=%g (the library's commit rate is paced: not a measure of it)", c.paceLibrary)
	}
	if c.blockprofile != "" {
		d += " blockprofile=on (during the drain)"
	}
	return d
}

// memoryBound is, in MiB, what the library documents that a draining
// instance holds: under about twice DispatchQueueBytes of outbox messages
// (Options.DispatchQueueBytes), and the subscriber's Prefetch deliveries of
// size bytes. It bounds the messages held, which the RSS growth it is
// compared with includes, with the heap's slack besides.
func memoryBound(o final.Options, size int) float64 {
	prefetch := o.Prefetch
	if prefetch == 0 {
		prefetch = final.DefaultPrefetch
	}
	return float64(2*o.DispatchQueueBytes+prefetch*size) / (1 << 20)
}
