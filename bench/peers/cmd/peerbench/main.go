// Command peerbench measures a peer of final, on the same database, broker
// and transaction shape as cmd/finalbench, and prints one JSON object on
// stdout. cmd/finalbench's peers phase runs it and puts the figures beside
// the library's and the raw limits of the same run.
//
// The peers (-system):
//
//   - watermill: Watermill's SQL publisher inside the business transaction
//     (watermill-sql v4, its default MySQL or PostgreSQL schema and offsets
//     adapters) behind the forwarder component's publisher, and the
//     forwarder moving the rows to RabbitMQ (watermill-amqp v3, durable
//     queue, persistent messages, publisher confirms); a watermill-amqp
//     subscriber counts the deliveries.
//   - river: River's InsertTx in the business transaction (pgx v5 pool,
//     riverpgxv5, on PostgreSQL only) and a client whose no-op worker counts
//     the jobs it runs. There is no broker: the worker is the consumer.
//
// Phases, each on tables and queues of its own: commit (producers for -d
// doing a business insert and -per-tx messages per transaction while the
// forwarder or worker runs, then waiting for every message), paced (the
// same with the producers held to -rate tx/s, when -rate is set), drain
// (-backlog messages committed while the forwarder or worker is stopped,
// then drained) and sweep (the commit phase for -d/3 per producer count). Every
// phase counts, per message id, what was delivered: a message committed and
// never delivered (no new delivery for -grace) is lost, a second delivery
// is a duplicate.
//
// This is a module of its own, so that the library's go.mod never carries
// the peers' dependencies:
//
//	cd bench/peers && go run ./cmd/peerbench -system watermill -db mysql -d 10s
//	cd bench/peers && go run ./cmd/peerbench -system river -db postgres -d 10s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

type config struct {
	system, db   string
	dsn, amqpURL string
	producers    int
	size         int
	perTx        int
	duration     time.Duration
	rate         float64 // tx/s of the paced phase (0: none)
	backlog      int
	sweep        []int
	grace        time.Duration // no new delivery for this long: the rest is lost
	maxWait      time.Duration // the longest a phase waits for its deliveries
	linger       time.Duration // how long deliveries are still counted after the last one was in
	prefetch     int           // the consumer's prefetch (watermill)
	wmPoll       time.Duration // the SQL subscriber's PollInterval (watermill)
	wmBatch      int           // the SQL schema's SubscribeBatchSize (watermill)
	riverWorkers int           // the queue's MaxWorkers (river)
}

func main() {
	var (
		c     config
		sweep string
	)
	flag.StringVar(&c.system, "system", "watermill", "the peer: watermill or river")
	flag.StringVar(&c.db, "db", "mysql", "database: mysql or postgres (river: postgres only)")
	flag.StringVar(&c.dsn, "dsn", "", "database DSN (default: $FINAL_MYSQL_DSN or root@tcp(127.0.0.1:3306)/test for mysql,\n"+
		"$FINAL_POSTGRES_DSN or postgres://postgres@127.0.0.1:5432/test?sslmode=disable for postgres)")
	flag.StringVar(&c.amqpURL, "amqp", envOr("FINAL_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ URL (watermill)")
	flag.IntVar(&c.producers, "c", 8, "concurrent producers")
	flag.IntVar(&c.size, "size", 256, "payload bytes")
	flag.IntVar(&c.perTx, "per-tx", 1, "messages per transaction")
	flag.DurationVar(&c.duration, "d", 10*time.Second, "length of the commit phase (a sweep point takes a third of it)")
	flag.Float64Var(&c.rate, "rate", 0, "tx/s of a paced phase after the commit phase: the producers held to this rate for -d, for the p99 at a given rate\n"+
		"(cmd/finalbench passes its paced latency phase's, half the limit; 0: no paced phase)")
	flag.IntVar(&c.backlog, "backlog", 100000, "messages in the backlog-drain phase (0: no drain phase)")
	flag.StringVar(&sweep, "sweep", "", "producer counts of the sweep (empty: no sweep)")
	flag.DurationVar(&c.grace, "grace", 30*time.Second, "a phase's messages not delivered after this long without a new delivery are lost")
	flag.DurationVar(&c.maxWait, "max-wait", 10*time.Minute, "the longest a phase waits for its deliveries after committing")
	flag.DurationVar(&c.linger, "linger", time.Second, "deliveries still counted (as duplicates) after the last message was in")
	flag.IntVar(&c.prefetch, "prefetch", 32, "watermill: the AMQP subscriber's prefetch (final's default Prefetch is 32)")
	flag.DurationVar(&c.wmPoll, "wm-poll", time.Second, "watermill: the SQL subscriber's PollInterval (watermill-sql's default 1s)")
	flag.IntVar(&c.wmBatch, "wm-batch", 100, "watermill: the SQL schema's SubscribeBatchSize (watermill-sql's default 100)")
	flag.IntVar(&c.riverWorkers, "river-workers", 1000, "river: the queue's MaxWorkers (River requires one; it fetches at most that many jobs per FetchCooldown, 100ms)")
	flag.Parse()
	for _, f := range strings.Split(sweep, ",") {
		if f = strings.TrimSpace(f); f != "" {
			n, err := strconv.Atoi(f)
			if err != nil || n <= 0 {
				log.Fatalf("peerbench: bad -sweep entry %q", f)
			}
			c.sweep = append(c.sweep, n)
		}
	}
	if c.producers <= 0 || c.size <= 0 || c.perTx <= 0 || c.backlog < 0 || c.duration <= 0 || c.rate < 0 {
		log.Fatal("peerbench: -c, -size, -per-tx and -d must be positive, -backlog and -rate not negative")
	}
	if c.dsn == "" {
		c.dsn = defaultDSN(c.db)
	}
	r, err := run(context.Background(), c)
	if err != nil {
		log.Fatalf("peerbench: %s on %s: %v", c.system, c.db, err)
	}
	out, _ := json.MarshalIndent(r, "", "  ")
	fmt.Println(string(out))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func defaultDSN(db string) string {
	switch db {
	case "mysql":
		return envOr("FINAL_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/test")
	case "postgres":
		return envOr("FINAL_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	}
	return ""
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "peerbench: "+format+"\n", args...)
}

// run opens the peer, runs the phases and closes the peer, removing every
// table, schema and queue it made.
func run(ctx context.Context, c config) (*result, error) {
	var (
		sys system
		err error
	)
	switch c.system {
	case "watermill":
		sys, err = openWatermill(ctx, c)
	case "river":
		sys, err = openRiver(ctx, c)
	default:
		return nil, fmt.Errorf("unknown -system %q (have watermill, river)", c.system)
	}
	if err != nil {
		return nil, err
	}
	defer sys.close()
	r := &result{System: c.system, DB: c.db, Versions: versions(c.system), Setup: sys.describe(), Config: c.describe(),
		Started: time.Now().UTC()}

	say("%s on %s: commit phase, %d producers, %d msg/tx, %s", c.system, c.db, c.producers, c.perTx, c.duration)
	ph, err := commitPhase(ctx, sys, "commit", c.producers, c.duration, 0, c)
	if err != nil {
		return nil, err
	}
	say("  commit %.0f tx/s, end to end %.0f tx/s, p50 %.2f ms, p99 %.2f ms, %d lost, %d duplicates",
		ph.CommitTx, ph.E2ETx, ph.Latency.P50, ph.Latency.P99, ph.Lost, ph.Duplicates)
	r.Commit = ph
	if c.rate > 0 {
		say("paced phase: %d producers held to %.0f tx/s, %s", c.producers, c.rate, c.duration)
		ph, err := commitPhase(ctx, sys, "paced", c.producers, c.duration, c.rate, c)
		if err != nil {
			return nil, err
		}
		say("  commit %.0f tx/s, p50 %.2f ms, p99 %.2f ms, %d lost, %d duplicates",
			ph.CommitTx, ph.Latency.P50, ph.Latency.P99, ph.Lost, ph.Duplicates)
		r.Paced = ph
	}
	if c.backlog > 0 {
		say("backlog of %d with the %s stopped, then drain", c.backlog, sys.relayName())
		d, err := drainPhase(ctx, sys, c)
		if err != nil {
			return nil, err
		}
		say("  drained %.0f msg/s, %d lost, %d duplicates", d.MsgPerS, d.Lost, d.Duplicates)
		r.Drain = d
	}
	for i, n := range c.sweep {
		say("sweep: %d producers", n)
		ph, err := commitPhase(ctx, sys, "sweep"+strconv.Itoa(i), n, c.duration/3, 0, c)
		if err != nil {
			return nil, err
		}
		r.Sweep = append(r.Sweep, sweepPoint{Producers: n, CommitTx: ph.CommitTx, E2ETx: ph.E2ETx,
			Committed: ph.Committed, Lost: ph.Lost, Duplicates: ph.Duplicates, Phantoms: ph.Phantoms})
	}
	r.total()
	r.Finished = time.Now().UTC()
	return r, nil
}

func (c config) describe() string {
	return fmt.Sprintf("producers=%d payload=%dB per-tx=%d phase=%s rate=%.0f backlog=%d grace=%s",
		c.producers, c.size, c.perTx, c.duration, c.rate, c.backlog, c.grace)
}

// versions lists the peer's modules as built.
func versions(system string) map[string]string {
	v := map[string]string{}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	for _, d := range bi.Deps {
		switch {
		case system == "watermill" && strings.HasPrefix(d.Path, "github.com/ThreeDotsLabs/"),
			system == "watermill" && (d.Path == "github.com/go-sql-driver/mysql" || d.Path == "github.com/rabbitmq/amqp091-go"),
			system == "river" && (d.Path == "github.com/riverqueue/river" || strings.HasPrefix(d.Path, "github.com/riverqueue/river/riverdriver/")),
			d.Path == "github.com/jackc/pgx/v5":
			v[d.Path] = d.Version
		}
	}
	return v
}
