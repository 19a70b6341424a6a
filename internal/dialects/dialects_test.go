package dialects_test

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"testing"

	_ "github.com/go-sql-driver/mysql"

	"github.com/finalbus/final/internal/dialects"
	"github.com/finalbus/final/outbox/mysql"
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
