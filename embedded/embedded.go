// Package embedded runs final with nothing installed: an SQLite database
// file (outbox/sqlite on the pure-Go modernc.org/sqlite) and a NATS server
// with JetStream inside the process (mq/nats over an in-process
// connection, no listening port). It is what `go run ./_example/quickstart`
// and the tests of a machine without servers run on:
//
//	env, err := embedded.Open(dir)
//	if err != nil { … }
//	defer env.Close()
//	bus := final.New("order_svc", env.DB, env.Provider(), final.DefaultOptions())
//
// Both keep their data under dir, so a process that opens the same
// directory again finds the outbox and the streams where the last one left
// them. It is for one process on one host: tests, tools, demos, a service
// that runs alone. Move to MariaDB/PostgreSQL and RabbitMQ/NATS servers
// by changing the two values given to final.New.
package embedded

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/nats"
	"github.com/finalbus/final/outbox/sqlite"
)

// Env is an SQLite database and an in-process NATS server under one
// directory. Close it when done.
type Env struct {
	// DB is the SQLite database dir/app.db, opened with the busy timeout
	// and WAL mode the SQLite store needs: give it to final.New, and write
	// the business rows on it.
	DB *sql.DB

	server *natsserver.Server
}

// readyTimeout bounds the wait for the in-process NATS server to start.
const readyTimeout = 10 * time.Second

// Open creates dir if needed and opens the SQLite database and the NATS
// server in it.
func Open(dir string) (*Env, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	srv, err := natsserver.NewServer(&natsserver.Options{
		ServerName: "final-embedded",
		DontListen: true, // in-process connections only
		JetStream:  true,
		StoreDir:   filepath.Join(dir, "nats"),
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: nats server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded: nats server not ready within %s", readyTimeout)
	}
	// The file is created before the pool opens it, so that concurrent
	// first connections do not race to switch a new file to WAL.
	path := filepath.Join(dir, "app.db")
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640); err == nil {
		_ = f.Close()
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+sqlite.DSNParams+"&_txlock=immediate")
	if err == nil {
		err = db.Ping()
	}
	if err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded: sqlite %s: %w", path, err)
	}
	return &Env{DB: db, server: srv}, nil
}

// Provider returns a JetStream provider on the in-process server, with
// opts; give it to final.New. Each call returns a new provider (one per
// bus).
func (e *Env) Provider(opts ...nats.Option) mq.IProvider {
	in := nats.WithNATSOptions(natsgo.InProcessServer(e.server))
	return nats.NewProvider("nats://in-process", append([]nats.Option{in}, opts...)...)
}

// Close closes the database and shuts the NATS server down, waiting for
// it. Shut the buses on it down first.
func (e *Env) Close() error {
	err := e.DB.Close()
	e.server.Shutdown()
	e.server.WaitForShutdown()
	return errors.Join(err)
}
