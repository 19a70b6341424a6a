package dialects_test

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"testing"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/lib/pq"

	"github.com/finalbus/final/internal/dialects"
	"github.com/finalbus/final/outbox/mysql"
	"github.com/finalbus/final/outbox/postgres"
)

func TestForRecognisesTheDriver(t *testing.T) {
	db, err := sql.Open("mysql", "root@tcp(127.0.0.1:3306)/test") // does not connect
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := dialects.DriverPackage(db); got != "github.com/go-sql-driver/mysql" {
		t.Fatalf("DriverPackage = %q", got)
	}
	d, err := dialects.For(db)
	if err != nil || d != mysql.Dialect {
		t.Fatalf("For = %v, %v; want mysql.Dialect", d, err)
	}
}

func TestForRecognisesPostgresDrivers(t *testing.T) {
	for _, name := range []string{"pgx", "postgres"} { // pgx/v5/stdlib, lib/pq
		db, err := sql.Open(name, "postgres://postgres@127.0.0.1:5432/test") // does not connect
		if err != nil {
			t.Fatal(err)
		}
		d, err := dialects.For(db)
		db.Close()
		if err != nil || d != postgres.Dialect {
			t.Fatalf("%s: For = %v, %v; want postgres.Dialect", name, d, err)
		}
	}
}

type otherDriver struct{ sqlDriver }

func TestForRefusesAnUnknownDriver(t *testing.T) {
	sql.Register("dialects-test-other", &otherDriver{})
	db, err := sql.Open("dialects-test-other", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := dialects.For(db); !errors.Is(err, dialects.ErrUnknown) {
		t.Fatalf("For = %v, want ErrUnknown", err)
	}
}

// sqlDriver is a driver that opens nothing.
type sqlDriver struct{}

func (sqlDriver) Open(string) (driver.Conn, error) { return nil, errors.New("not a database") }
