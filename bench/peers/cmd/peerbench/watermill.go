package main

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// watermillSystem is Watermill's transactional outbox as its documentation
// builds it: the forwarder component's publisher wraps watermill-sql's
// publisher on the business transaction, so that each message is a row of
// the forwarder topic's table (an envelope naming its destination); the
// forwarder reads that table through watermill-sql's subscriber (its
// offsets in a table of their own) and publishes each message to RabbitMQ
// through watermill-amqp with publisher confirms; a watermill-amqp
// subscriber consumes the destination queue.
//
// Everything is watermill's default but the following, each stated in
// describe: the AMQP subscriber's prefetch (-prefetch, final's 32 where
// watermill-amqp's durable-queue config has 1), confirms on
// (ConfirmDelivery) with a pool of one publishing channel (the default 0
// opens a channel per publish), and -wm-poll and -wm-batch (watermill-sql's
// defaults, 1s and 100, unless changed).
type watermillSystem struct {
	c       config
	db      *sql.DB
	biz     *sql.Stmt
	bizName string
	prefix  string // of every table and queue of this run
	schema  wsql.SchemaAdapter
	offsets wsql.OffsetsAdapter
	// tableNames are the quoted names of a topic's messages and offsets
	// tables.
	tableNames func(topic string) []string
	logger     watermill.LoggerAdapter
	mq         *amqp091.Connection // deletes the queues
}

func openWatermill(ctx context.Context, c config) (*watermillSystem, error) {
	s := &watermillSystem{c: c, prefix: fmt.Sprintf("peerbench_%d", os.Getpid()),
		logger: watermill.NewSlogLogger(peerLogger())}
	driver := "mysql"
	switch c.db {
	case "mysql":
		schema := wsql.DefaultMySQLSchema{SubscribeBatchSize: c.wmBatch}
		offsets := wsql.DefaultMySQLOffsetsAdapter{}
		s.schema, s.offsets = schema, offsets
		s.tableNames = func(t string) []string { return []string{schema.MessagesTable(t), offsets.MessagesOffsetsTable(t)} }
		s.bizName = "`" + s.prefix + "_biz`"
	case "postgres":
		driver = "pgx"
		schema := wsql.DefaultPostgreSQLSchema{SubscribeBatchSize: c.wmBatch}
		offsets := wsql.DefaultPostgreSQLOffsetsAdapter{}
		s.schema, s.offsets = schema, offsets
		s.tableNames = func(t string) []string { return []string{schema.MessagesTable(t), offsets.MessagesOffsetsTable(t)} }
		s.bizName = `"` + s.prefix + `_biz"`
	default:
		return nil, fmt.Errorf("watermill: unknown -db %q (have mysql, postgres)", c.db)
	}
	db, err := sql.Open(driver, c.dsn)
	if err != nil {
		return nil, err
	}
	s.db = db
	db.SetMaxOpenConns(4 * (c.producers + 8))
	db.SetMaxIdleConns(4 * (c.producers + 8))
	if err := db.PingContext(ctx); err != nil {
		s.close()
		return nil, fmt.Errorf("database: %w", err)
	}
	if _, err := db.ExecContext(ctx, bizDDL(c.db, s.bizName)); err != nil {
		s.close()
		return nil, err
	}
	if s.biz, err = db.PrepareContext(ctx, bizInsert(c.db, s.bizName)); err != nil {
		s.close()
		return nil, err
	}
	if s.mq, err = amqp091.Dial(c.amqpURL); err != nil {
		s.close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	return s, nil
}

func (s *watermillSystem) relayName() string { return "forwarder" }

func (s *watermillSystem) describe() string {
	return fmt.Sprintf("watermill-sql %s schema and offsets adapters (JSON payload column), SubscribeBatchSize %d, PollInterval %s, "+
		"other SubscriberConfig defaults; components/forwarder; watermill-amqp NewDurableQueueConfig, ConfirmDelivery, "+
		"ChannelPoolSize 1, consumer prefetch %d", s.c.db, s.c.wmBatch, s.c.wmPoll, s.c.prefetch)
}

func (s *watermillSystem) settle(ctx context.Context) {
	settleSQL(ctx, s.db, s.c.db, []string{s.bizName})
}

func (s *watermillSystem) close() {
	if s.mq != nil {
		_ = s.mq.Close()
	}
	if s.biz != nil {
		_ = s.biz.Close()
	}
	_, _ = s.db.Exec("DROP TABLE IF EXISTS " + s.bizName)
	_ = s.db.Close()
}

// watermillPhase is one phase's forwarder topic (its messages and offsets
// tables), destination queue, consumer and forwarder.
type watermillPhase struct {
	s             *watermillSystem
	fwdTopic      string // the SQL side
	dest          string // the AMQP queue
	sqlSub        *wsql.Subscriber
	amqpPub       *wamqp.Publisher
	amqpSub       *wamqp.Subscriber
	consumed      sync.WaitGroup
	fwd           *forwarder.Forwarder
	fwdDone       chan error
	cancelRelay   context.CancelFunc
	cancelConsume context.CancelFunc
}

func (s *watermillSystem) open(ctx context.Context, name string, tr *tracker) (phase, error) {
	p := &watermillPhase{s: s, fwdTopic: s.prefix + "_" + name, dest: s.prefix + "." + name}
	var err error
	p.sqlSub, err = wsql.NewSubscriber(wsql.BeginnerFromStdSQL(s.db), wsql.SubscriberConfig{
		SchemaAdapter:    s.schema,
		OffsetsAdapter:   s.offsets,
		InitializeSchema: true,
		PollInterval:     s.c.wmPoll,
	}, s.logger)
	if err != nil {
		return nil, err
	}
	// The tables must exist before the first transaction, which may come
	// before the forwarder subscribes (the drain phase).
	if err := p.sqlSub.SubscribeInitialize(p.fwdTopic); err != nil {
		p.close()
		return nil, err
	}
	pubCfg := wamqp.NewDurableQueueConfig(s.c.amqpURL)
	pubCfg.Publish.ConfirmDelivery = true
	pubCfg.Publish.ChannelPoolSize = 1
	if p.amqpPub, err = wamqp.NewPublisher(pubCfg, s.logger); err != nil {
		p.close()
		return nil, err
	}
	subCfg := wamqp.NewDurableQueueConfig(s.c.amqpURL)
	subCfg.Consume.Qos.PrefetchCount = s.c.prefetch
	if p.amqpSub, err = wamqp.NewSubscriber(subCfg, s.logger); err != nil {
		p.close()
		return nil, err
	}
	// Subscribing declares the queue, before anything is published to it
	// (the default exchange drops what no queue takes).
	cctx, cancel := context.WithCancel(context.Background())
	p.cancelConsume = cancel
	msgs, err := p.amqpSub.Subscribe(cctx, p.dest)
	if err != nil {
		p.close()
		return nil, err
	}
	p.consumed.Add(1)
	go func() {
		defer p.consumed.Done()
		for m := range msgs {
			if len(m.Payload) >= 8 {
				tr.delivered(binary.BigEndian.Uint64(m.Payload))
			}
			m.Ack()
		}
	}()
	return p, nil
}

func (p *watermillPhase) commit(ctx context.Context, seqs []uint64) error {
	tx, err := p.s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.Stmt(p.s.biz).ExecContext(ctx, 1, 100); err != nil {
		return err
	}
	sqlPub, err := wsql.NewPublisher(wsql.TxFromStdSQL(tx), wsql.PublisherConfig{SchemaAdapter: p.s.schema}, p.s.logger)
	if err != nil {
		return err
	}
	pub := forwarder.NewPublisher(sqlPub, forwarder.PublisherConfig{ForwarderTopic: p.fwdTopic})
	for _, seq := range seqs {
		if err := pub.Publish(p.dest, message.NewMessage(watermill.NewUUID(), payload(p.s.c.size, seq))); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (p *watermillPhase) startRelay(context.Context) error {
	fwd, err := forwarder.NewForwarder(p.sqlSub, p.amqpPub, p.s.logger, forwarder.Config{ForwarderTopic: p.fwdTopic})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.fwd, p.cancelRelay, p.fwdDone = fwd, cancel, make(chan error, 1)
	go func() { p.fwdDone <- fwd.Run(ctx) }()
	select {
	case <-fwd.Running():
		return nil
	case err := <-p.fwdDone:
		return fmt.Errorf("forwarder: %w", err)
	case <-time.After(time.Minute):
		return fmt.Errorf("forwarder: not running after a minute")
	}
}

func (p *watermillPhase) close() {
	if p.fwd != nil {
		_ = p.fwd.Close()
		p.cancelRelay()
		<-p.fwdDone
	}
	if p.sqlSub != nil {
		_ = p.sqlSub.Close()
	}
	if p.amqpPub != nil {
		_ = p.amqpPub.Close()
	}
	if p.amqpSub != nil {
		p.cancelConsume()
		_ = p.amqpSub.Close()
		p.consumed.Wait()
	}
	for _, t := range p.s.tableNames(p.fwdTopic) {
		_, _ = p.s.db.Exec("DROP TABLE IF EXISTS " + t)
	}
	if ch, err := p.s.mq.Channel(); err == nil {
		_, _ = ch.QueueDelete(p.dest, false, false, false)
		_ = ch.Close()
	}
}
