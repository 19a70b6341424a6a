package mysql

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/finalbus/final/outbox"
)

// Limits of the names this package builds, the lower of MariaDB's and
// MySQL's: MySQL 5.7 and later refuse a GET_LOCK name over 64 characters,
// where MariaDB takes any length.
const (
	// maxIdentifierLen is MySQL's limit for a table or index name.
	maxIdentifierLen = 64
	maxLockNameLen   = 64
	// maxFileNameLen is the longest table name once encoded as a file
	// name: the server stores each table in "<encoded name>.ibd" (MariaDB
	// also "<encoded name>.frm"), and file systems allow 255 bytes. The
	// encoding keeps letters, digits and '_', and writes any other
	// character as five ("-" is "@002d"), so a name of 64 characters
	// can be refused with "File name too long".
	maxFileNameLen = 255 - len(".ibd")
)

// table is a validated table name and its quoted form.
type table struct {
	name string // validated, unquoted
	q    string // quoted
}

// newTable validates name as a table name: outbox.ValidateIdentifier within
// MySQL's 64 characters, and short enough as a file name. It fails with
// outbox.ErrInvalidIdentifier. Such a name is safe inside backquotes.
func newTable(name string) (table, error) {
	if err := outbox.ValidateIdentifier(name, maxIdentifierLen); err != nil {
		return table{}, err
	}
	q := "`" + name + "`"
	if n := fileNameLen(name); n > maxFileNameLen {
		return table{}, fmt.Errorf("%w: %q is %d bytes as a file name, limit %d (each character other than [A-Za-z0-9_] takes 5)",
			outbox.ErrInvalidIdentifier, name, n, maxFileNameLen)
	}
	return table{name: name, q: q}, nil
}

// fileNameLen is the length of the file name the server gives a table
// called name (of [A-Za-z0-9_.-], as validated).
func fileNameLen(name string) int {
	n := 0
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
			n++
		default:
			n += len("@002d")
		}
	}
	return n
}

// lockName is the GET_LOCK name that serialises the migrations of table:
// "final_migrate_<table>" when that fits in 64 characters, else the
// prefix and as much of the table name as fits with a hash of the whole
// name, so that it is still one lock per table.
func lockName(table string) string {
	const prefix = "final_migrate_"
	if len(prefix)+len(table) <= maxLockNameLen {
		return prefix + table
	}
	sum := sha256.Sum256([]byte(table))
	hash := hex.EncodeToString(sum[:8])
	return prefix + table[:maxLockNameLen-len(prefix)-len(hash)-1] + "_" + hash
}
