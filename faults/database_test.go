package faults

import (
	"database/sql"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/finalbus/final/internal/testenv"
)

// dbUser is the suite's own user (MariaDB) or role (PostgreSQL): killing
// its connections touches nothing else.
const dbUser = "final_faults"

// database is what the suite's SQL differs in from one database to
// another. The processes of the suite's roles find theirs by name.
type database struct {
	name   string // in the report
	driver string // database/sql driver name
	ph     string // a statement's first placeholder
	idCol  string // an auto-numbered primary key column
	now    string // the time of the statement
	quote  func(ident string) string
}

var (
	mariaDB = &database{name: "MariaDB", driver: "mysql", ph: "?", idCol: "id BIGINT AUTO_INCREMENT PRIMARY KEY",
		now: "NOW(6)", quote: func(s string) string { return "`" + s + "`" }}
	postgreSQL = &database{name: "PostgreSQL", driver: "pgx", ph: "$1", idCol: "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
		now: "clock_timestamp()", quote: func(s string) string { return `"` + s + `"` }}
)

// databases are those the suite runs on, in the report's order.
var databases = []*database{mariaDB, postgreSQL}

func databaseNamed(name string) *database {
	for _, d := range databases {
		if d.name == name {
			return d
		}
	}
	return nil
}

// setupWorld prepares the suite's corner of d and of b.
func setupWorld(t *testing.T, d *database, b *broker) *world {
	t.Helper()
	var w *world
	switch d {
	case mariaDB:
		w = mariaDBWorld(t)
	case postgreSQL:
		w = postgresWorld(t)
	default:
		t.Fatalf("no world for %s", d.name)
	}
	w.broker, w.brokerURL = b, b.setup(t)
	return w
}

// mariaDBWorld works as the MariaDB user dbUser, which may do anything in
// the test database, and kills its connections with KILL.
func mariaDBWorld(t *testing.T) *world {
	root := testenv.DB(t)
	for _, q := range []string{
		"CREATE USER IF NOT EXISTS '" + dbUser + "'@'%'",
		"GRANT ALL PRIVILEGES ON test.* TO '" + dbUser + "'@'%'",
	} {
		if _, err := root.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	cfg, err := mysql.ParseDSN(testenv.MySQLDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Passwd = dbUser, ""
	return &world{
		db: mariaDB, rootDB: root, dsn: cfg.FormatDSN(), dbAddr: cfg.Addr,
		dsnVia: func(addr string) string {
			c := cfg.Clone()
			c.Addr, c.Timeout = addr, 2*time.Second
			return c.FormatDSN()
		},
		service: func(t *testing.T) string { return testenv.Service(t, root) },
		killConnections: func() (int, error) {
			rows, err := root.Query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", dbUser)
			if err != nil {
				return 0, err
			}
			var ids []int64
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return 0, err
				}
				ids = append(ids, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return 0, err
			}
			kills := 0
			for _, id := range ids { // one may have closed since the list
				if _, err := root.Exec(fmt.Sprintf("KILL CONNECTION %d", id)); err == nil {
					kills++
				}
			}
			return kills, nil
		},
	}
}

// postgresWorld works as the PostgreSQL role dbUser, which may create
// tables in schema public of the test database and use the shared tables
// of final (PostgreSQL 15 gives PUBLIC no CREATE there), and kills its
// connections with pg_terminate_backend. The DSN must be a URL.
func postgresWorld(t *testing.T) *world {
	root := testenv.Postgres(t)
	// CREATE ROLE has no IF NOT EXISTS, and roles are the cluster's:
	// another run may create it at the same moment.
	if _, err := root.Exec(`DO $$ BEGIN CREATE ROLE ` + dbUser + ` LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`); err != nil {
		t.Fatalf("create role %s: %v", dbUser, err)
	}
	var dbName string
	if err := root.QueryRow(`SELECT current_database()`).Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`GRANT CONNECT, TEMPORARY ON DATABASE ` + postgreSQL.quote(dbName) + ` TO ` + dbUser,
		`GRANT USAGE, CREATE ON SCHEMA public TO ` + dbUser,
	} {
		if _, err := root.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The tables every service shares; the suite's buses create those that
	// do not exist yet.
	for _, table := range []string{"final_schema_migrations", "final_topology", "final_redeliveries"} {
		var exists bool
		if err := root.QueryRow(`SELECT to_regclass($1) IS NOT NULL`, postgreSQL.quote(table)).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			if _, err := root.Exec(`GRANT SELECT, INSERT, UPDATE, DELETE ON ` + postgreSQL.quote(table) + ` TO ` + dbUser); err != nil {
				t.Fatalf("grant on %s: %v", table, err)
			}
		}
	}
	u, err := url.Parse(testenv.PostgresDSN())
	if err != nil || u.Host == "" {
		t.Fatalf("the fault suite needs the PostgreSQL DSN as a URL (postgres://...), not %q", testenv.PostgresDSN())
	}
	u.User = url.User(dbUser)
	return &world{
		db: postgreSQL, rootDB: root, dsn: u.String(), dbAddr: u.Host,
		dsnVia: func(addr string) string {
			v := *u
			v.Host = addr
			q := v.Query()
			q.Set("connect_timeout", "2")
			v.RawQuery = q.Encode()
			return v.String()
		},
		service: func(t *testing.T) string { return testenv.PostgresService(t, root) },
		killConnections: func() (int, error) {
			rows, err := root.Query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()`, dbUser)
			if err != nil {
				return 0, err
			}
			defer rows.Close()
			kills := 0
			for rows.Next() {
				var ok bool
				if err := rows.Scan(&ok); err != nil {
					return 0, err
				}
				if ok {
					kills++
				}
			}
			return kills, rows.Err()
		},
	}
}

// createTable creates a table of the scene's with the given columns that
// the suite's user may write, and drops it when t ends.
func (w *world) createTable(t *testing.T, name, columns string) {
	t.Helper()
	q := w.db.quote(name)
	if _, err := w.rootDB.Exec("CREATE TABLE " + q + " (" + columns + ")"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = w.rootDB.Exec("DROP TABLE IF EXISTS " + q) })
	if w.db == postgreSQL {
		if _, err := w.rootDB.Exec("GRANT SELECT, INSERT, UPDATE, DELETE ON " + q + " TO " + dbUser); err != nil {
			t.Fatal(err)
		}
	}
}

func (w *world) open(t *testing.T, dsn string) *sql.DB {
	db, err := sql.Open(w.db.driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	t.Cleanup(func() { db.Close() })
	return db
}
