package postgres

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/finalbus/final/outbox"
)

// maxIdentifierLen is PostgreSQL's limit for a name (NAMEDATALEN - 1). A
// longer name is not refused by the server but cut to this length, so two
// names alike up to the cut would be one table.
const maxIdentifierLen = 63

// table is a validated table name and its quoted form.
type table struct {
	name string // validated, unquoted
	q    string // quoted
}

// newTable validates name as a table name: outbox.ValidateIdentifier, and
// at most 63 bytes. It fails with outbox.ErrInvalidIdentifier.
func newTable(name string) (table, error) {
	if err := outbox.ValidateIdentifier(name, maxIdentifierLen); err != nil {
		return table{}, fmt.Errorf("%w (PostgreSQL would silently cut a longer name)", err)
	}
	return table{name: name, q: quote(name)}, nil
}

// quote returns a validated name in double quotes. The characters
// outbox.ValidateIdentifier allows need no escaping, and quoting keeps
// the name's case and lets it hold '.' and '-'.
func quote(name string) string { return `"` + name + `"` }

// derivedName is the name of an object that belongs to table, such as an
// index: "<table>_<suffix>" when that fits in 63 bytes, else as much of
// the table name as fits with a hash of the whole name. Index names are
// unique per schema in PostgreSQL (per table in MySQL), so the table's
// name must be part of them.
func derivedName(table, suffix string) string {
	if len(table)+1+len(suffix) <= maxIdentifierLen {
		return table + "_" + suffix
	}
	sum := sha256.Sum256([]byte(table))
	hash := hex.EncodeToString(sum[:8])
	return table[:maxIdentifierLen-len(hash)-len(suffix)-2] + "_" + hash + "_" + suffix
}

// lockKey is the pg_advisory_xact_lock key that serialises the migrations
// of what name stands for: 64 bits of a hash, so that two tables sharing
// a key (a chance of 2^-64) would only wait for each other.
func lockKey(name string) int64 {
	sum := sha256.Sum256([]byte("final_migrate\x00" + name))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}
