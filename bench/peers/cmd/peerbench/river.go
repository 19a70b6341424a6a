package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// riverSystem is River on PostgreSQL: the business insert and InsertTx of
// one job per message in one pgx transaction, and a client whose no-op
// worker records each job's message id. The jobs table is the queue: there
// is no broker, and the worker is the consumer.
//
// Everything is River's default (FetchCooldown 100ms, FetchPollInterval 1s,
// LISTEN/NOTIFY on, completions batched by its completer) but the queue's
// MaxWorkers (-river-workers, 1000), which River requires to be set: a
// fetch takes at most that many jobs, and fetches come at most once per
// FetchCooldown, so the 100 of River's README would cap the queue near
// 1,000 jobs/s whatever the database could do. The
// tables are migrated with rivermigrate into a schema of this run's own,
// dropped at the end.
type riverSystem struct {
	c       config
	pool    *pgxpool.Pool
	schema  string
	bizName string
	logger  *slog.Logger
}

// noopArgs is a job carrying a message: its id and a pad of the payload's
// size.
type noopArgs struct {
	Seq uint64 `json:"seq"`
	Pad string `json:"pad"`
}

func (noopArgs) Kind() string { return "peerbench_noop" }

// noopWorker records the message id of each job it runs.
type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	tr *tracker
}

func (w *noopWorker) Work(_ context.Context, job *river.Job[noopArgs]) error {
	w.tr.delivered(job.Args.Seq)
	return nil
}

func openRiver(ctx context.Context, c config) (*riverSystem, error) {
	if c.db != "postgres" {
		return nil, fmt.Errorf("river runs on PostgreSQL only, not on -db %q", c.db)
	}
	pc, err := pgxpool.ParseConfig(c.dsn)
	if err != nil {
		return nil, err
	}
	pc.MaxConns = int32(4 * (c.producers + 8)) // as cmd/finalbench's database/sql pool
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, err
	}
	s := &riverSystem{c: c, pool: pool, schema: fmt.Sprintf("peerbench_%d", os.Getpid()),
		logger: peerLogger()}
	s.bizName = pgx.Identifier{s.schema, "biz"}.Sanitize()
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database: %w", err)
	}
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{s.schema}.Sanitize()); err != nil {
		pool.Close()
		return nil, err
	}
	if _, err := pool.Exec(ctx, bizDDL(c.db, s.bizName)); err != nil {
		s.close()
		return nil, err
	}
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: s.schema, Logger: s.logger})
	if err != nil {
		s.close()
		return nil, err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		s.close()
		return nil, fmt.Errorf("rivermigrate: %w", err)
	}
	return s, nil
}

func (s *riverSystem) relayName() string { return "worker" }

func (s *riverSystem) describe() string {
	return fmt.Sprintf("river on pgx v5 (riverpgxv5), InsertTx per message, MaxWorkers %d, "+
		"FetchCooldown %s, FetchPollInterval %s, LISTEN/NOTIFY, other Config defaults; no-op worker; no broker: "+
		"the job table is the queue, so its limit is the raw DB alone, not raw DB + broker",
		s.c.riverWorkers, river.FetchCooldownDefault, river.FetchPollIntervalDefault)
}

func (s *riverSystem) settle(ctx context.Context) {
	for _, t := range []string{s.bizName, pgx.Identifier{s.schema, "river_job"}.Sanitize()} {
		_, _ = s.pool.Exec(ctx, "VACUUM "+t)
	}
}

func (s *riverSystem) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = s.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s.schema}.Sanitize()+" CASCADE")
	s.pool.Close()
}

// riverPhase is a queue of its own and a client working it.
type riverPhase struct {
	s       *riverSystem
	queue   string
	client  *river.Client[pgx.Tx]
	started bool
	pad     string
}

func (s *riverSystem) open(_ context.Context, name string, tr *tracker) (phase, error) {
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &noopWorker{tr: tr}); err != nil {
		return nil, err
	}
	queue := "peerbench_" + name
	client, err := river.NewClient(riverpgxv5.New(s.pool), &river.Config{
		Queues:  map[string]river.QueueConfig{queue: {MaxWorkers: s.c.riverWorkers}},
		Workers: workers,
		Schema:  s.schema,
		Logger:  s.logger,
	})
	if err != nil {
		return nil, err
	}
	return &riverPhase{s: s, queue: queue, client: client, pad: strings.Repeat("x", max(0, s.c.size-8))}, nil
}

func (p *riverPhase) commit(ctx context.Context, seqs []uint64) error {
	tx, err := p.s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, bizInsert(p.s.c.db, p.s.bizName), 1, 100); err != nil {
		return err
	}
	for _, seq := range seqs {
		if _, err := p.client.InsertTx(ctx, tx, noopArgs{Seq: seq, Pad: p.pad}, &river.InsertOpts{Queue: p.queue}); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

func (p *riverPhase) startRelay(ctx context.Context) error {
	if err := p.client.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	p.started = true
	return nil
}

func (p *riverPhase) close() {
	if p.started {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = p.client.Stop(ctx)
	}
}
