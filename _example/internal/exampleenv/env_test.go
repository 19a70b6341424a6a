package exampleenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/finalbus/final/internal/testenv"
)

const openDBChild = "FINAL_EXAMPLEENV_OPENDB"

// An example that cannot log in prints the DSN it used without its
// password. The test runs OpenDB in a child process, since it exits.
func TestOpenDBFailureHidesThePassword(t *testing.T) {
	if os.Getenv(openDBChild) != "" {
		OpenDB()
		return
	}
	testenv.DB(t) // MariaDB answers: the login itself must be what fails
	const secret = "s3cret-pw"
	cfg, err := mysql.ParseDSN(testenv.MySQLDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Passwd = secret // a wrong one
	dsn := cfg.FormatDSN()
	cfg.Passwd = "xxxxx"
	shown := cfg.FormatDSN()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenDBFailureHidesThePassword$")
	cmd.Env = append(os.Environ(), openDBChild+"=1", "FINAL_MYSQL_DSN="+dsn)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("OpenDB logged in with a wrong password:\n%s", out)
	}
	if !strings.Contains(string(out), "Access denied") {
		t.Fatalf("the child did not fail at the login:\n%s", out)
	}
	if strings.Contains(string(out), secret) {
		t.Fatalf("the password is in the output:\n%s", out)
	}
	if !strings.Contains(string(out), shown) {
		t.Fatalf("the output does not name the database:\n%s", out)
	}
}

func TestRedactDSN(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"root:s3cret@tcp(db:3306)/app?parseTime=true", "root:xxxxx@tcp(db:3306)/app?parseTime=true"},
		{"app:p@ss/w:rd@tcp(db)/app", "app:xxxxx@tcp(db:3306)/app"},
		{"root@tcp(127.0.0.1:3306)/test", "root@tcp(127.0.0.1:3306)/test"},
		{"root:s3cret@tcp(db:3306", "(the DSN does not parse)"},
	} {
		if got := redactDSN(tc.dsn); got != tc.want {
			t.Errorf("redactDSN(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
	}
}
