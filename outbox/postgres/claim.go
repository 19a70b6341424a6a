package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/internal/claim"
)

// Claim implements outbox.Store. It runs in READ COMMITTED and locks rows
// with FOR UPDATE SKIP LOCKED, so that concurrent claimers split the rows
// instead of waiting for each other; the lease it writes then hides the
// rows from the others until it ends.
//
// A row another claim updated meanwhile is checked again as it is now:
// one leased by a claim that committed is no longer available and is
// passed over.
//
// The claim decides on the rows' sizes (octet_length, read from the
// stored value's header) and reads the messages of the rows it takes
// only, so a claim bounded by maxBytes reads no more than that of a
// backlog of large messages.
func (s *Store) Claim(ctx context.Context, owner string, limit, maxBytes int, lease time.Duration) ([]outbox.Record, error) {
	for attempt := 1; ; attempt++ {
		recs, err := s.claim(ctx, owner, limit, maxBytes, lease)
		if err == nil || attempt == maxClaimAttempts || !retryable(err) {
			return recs, err
		}
	}
}

// maxClaimAttempts bounds the tries of a claim that lost a serialization
// conflict or a deadlock. Claims skip locked rows rather than wait for
// them, so neither is expected; a trigger or a rule of the user's on the
// table could cause them.
const maxClaimAttempts = 5

func (s *Store) claim(ctx context.Context, owner string, limit, maxBytes int, lease time.Duration) ([]outbox.Record, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	recs, err := s.claimIn(ctx, tx, owner, limit, maxBytes, lease, false)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim commit: %w", err)
	}
	decode(recs)
	return recs, nil
}

// claimIn locks the rows of a claim in tx, which runs in READ COMMITTED,
// and returns them in id order, not yet decoded. It leases them for lease,
// unless hold is set: the rows are then held by tx alone (ClaimHeld).
func (s *Store) claimIn(ctx context.Context, tx *sql.Tx, owner string, limit, maxBytes int, lease time.Duration, hold bool) ([]outbox.Record, error) {
	c := &claimSteps{s: s, tx: tx, owner: owner, lease: lease, hold: hold}
	if _, err := claim.Rows(ctx, c, limit, maxBytes); err != nil {
		return nil, err
	}
	slices.SortFunc(c.recs, func(a, b outbox.Record) int { return cmp.Compare(a.ID, b.ID) })
	return c.recs, nil
}

// claimSteps are one claim's statements (claim.Steps) in its transaction.
type claimSteps struct {
	s     *Store
	tx    *sql.Tx
	owner string
	lease time.Duration
	hold  bool
	recs  []outbox.Record // the rows taken, with their messages
}

// decode decodes the messages of claimed rows, once, for the rows claimed
// only.
func decode(recs []outbox.Record) {
	for i := range recs {
		recs[i].Decode()
	}
}

const candidateColumns = `id, COALESCE(octet_length(message), 0), attempts, order_key`

// Candidates locks up to limit available rows whose order key is not in
// skip and which are not among taken, first available first. It leaves
// out the runs of rows this store's own held claims hold (claim.Own) by
// ranges of ids, without trying to lock each; SKIP LOCKED passes over the
// rest of the rows others hold.
func (c *claimSteps) Candidates(ctx context.Context, limit, _ int, skip []int64, taken []claim.Candidate) ([]claim.Candidate, error) {
	query := `SELECT ` + candidateColumns + ` FROM ` + c.s.t.q + ` WHERE available_at <= ` + now
	args := []any{limit}
	for _, r := range c.s.own.Held().Ranges {
		args = append(args, r.First, r.Last)
		query += ` AND id NOT BETWEEN $` + strconv.Itoa(len(args)-1) + ` AND $` + strconv.Itoa(len(args))
	}
	if len(skip) > 0 {
		args = append(args, idArray(skip))
		query += ` AND (order_key IS NULL OR order_key <> ALL($` + strconv.Itoa(len(args)) + `::bigint[]))`
	}
	if len(taken) > 0 {
		args = append(args, idArray(claim.IDs(taken)))
		query += ` AND id <> ALL($` + strconv.Itoa(len(args)) + `::bigint[])`
	}
	query += ` ORDER BY available_at, id LIMIT $1 FOR UPDATE SKIP LOCKED`
	return scanCandidates(c.tx.QueryContext(ctx, query, args...))
}

// scanCandidates reads rows of candidateColumns.
func scanCandidates(rows *sql.Rows, err error) ([]claim.Candidate, error) {
	if err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim: %w", err)
	}
	defer rows.Close()
	var cands []claim.Candidate
	for rows.Next() {
		var (
			c   claim.Candidate
			key sql.NullInt64
		)
		if err := rows.Scan(&c.ID, &c.Size, &c.Attempts, &key); err != nil {
			return nil, fmt.Errorf("outbox/postgres: claim scan: %w", err)
		}
		c.Key = key.Int64
		cands = append(cands, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim: %w", err)
	}
	return cands, nil
}

// KeyRows walks the (order_key, id) index once per key: its first rows up
// to its top, in id order, as many as its count, passing over those the
// owner leased already, with whether each is available.
func (c *claimSteps) KeyRows(ctx context.Context, keys, tops, counts []int64, _ int) ([]claim.KeyRow, error) {
	rows, err := c.tx.QueryContext(ctx, `SELECT k.key, o.id, o.ready
		FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS k(key, top, n)
		CROSS JOIN LATERAL (
			SELECT id, available_at <= `+now+` AS ready FROM `+c.s.t.q+`
			WHERE order_key = k.key AND id <= k.top
			  AND NOT (claimed_by IS NOT DISTINCT FROM $4::text AND available_at > `+now+`)
			ORDER BY id LIMIT k.n
		) AS o
		ORDER BY k.key, o.id`, idArray(keys), idArray(tops), idArray(counts), c.owner)
	if err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim order: %w", err)
	}
	defer rows.Close()
	var found []claim.KeyRow
	for rows.Next() {
		var r claim.KeyRow
		if err := rows.Scan(&r.Key, &r.ID, &r.Ready); err != nil {
			return nil, fmt.Errorf("outbox/postgres: claim order: %w", err)
		}
		found = append(found, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim order: %w", err)
	}
	return found, nil
}

// Lock locks those of rows still available that no other transaction
// holds.
func (c *claimSteps) Lock(ctx context.Context, rows []claim.Candidate) ([]claim.Candidate, error) {
	return scanCandidates(c.tx.QueryContext(ctx, `SELECT `+candidateColumns+` FROM `+c.s.t.q+
		` WHERE id = ANY($1::bigint[]) AND available_at <= `+now+` FOR UPDATE SKIP LOCKED`, idArray(claim.IDs(rows))))
}

// Take leases the rows a pass takes, or, in a held claim, which holds them
// locked, only reads them; either way with their messages.
func (c *claimSteps) Take(ctx context.Context, taken []claim.Candidate) error {
	var (
		recs []outbox.Record
		err  error
	)
	if c.hold {
		recs, err = c.s.bodies(ctx, c.tx, taken)
	} else {
		recs, err = c.s.lease(ctx, c.tx, c.owner, taken, c.lease)
	}
	c.recs = append(c.recs, recs...)
	return err
}

// lease hides the claimed rows from other claimers until lease has passed,
// and reads their messages.
func (s *Store) lease(ctx context.Context, tx *sql.Tx, owner string, taken []claim.Candidate, lease time.Duration) ([]outbox.Record, error) {
	rows, err := tx.QueryContext(ctx, `UPDATE `+s.t.q+` SET available_at = `+now+` + `+micros("$1")+`,
		claimed_by = $2, last_send_at = `+now+` WHERE id = ANY($3::bigint[]) RETURNING id, message`,
		lease.Microseconds(), owner, idArray(claim.IDs(taken)))
	return scanRecords(rows, err, taken)
}

// bodies reads the messages of the rows taken by a held claim, which holds
// them locked.
func (s *Store) bodies(ctx context.Context, tx *sql.Tx, taken []claim.Candidate) ([]outbox.Record, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, message FROM `+s.t.q+` WHERE id = ANY($1::bigint[])`,
		idArray(claim.IDs(taken)))
	return scanRecords(rows, err, taken)
}

// scanRecords reads rows of (id, message) of the candidates taken into
// records.
func scanRecords(rows *sql.Rows, err error, taken []claim.Candidate) ([]outbox.Record, error) {
	if err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim: %w", err)
	}
	defer rows.Close()
	byID := make(map[int64]claim.Candidate, len(taken))
	for _, c := range taken {
		byID[c.ID] = c
	}
	recs := make([]outbox.Record, 0, len(taken))
	for rows.Next() {
		var r outbox.Record
		if err := rows.Scan(&r.ID, &r.Body); err != nil {
			return nil, fmt.Errorf("outbox/postgres: claim read: %w", err)
		}
		c := byID[r.ID]
		r.OrderKey, r.Attempts = c.Key, c.Attempts
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/postgres: claim read: %w", err)
	}
	return recs, nil
}
