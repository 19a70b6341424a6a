// Package gormbus hands a gorm transaction to a final.Bus, on every
// database and in every gorm mode, so that the business rows written with
// gorm and the messages published on the bus commit or roll back together:
//
//	gtx := gdb.Begin()
//	tx, err := gormbus.SQLTx(gtx)
//	if err != nil {
//		gtx.Rollback()
//		return err
//	}
//	return bus.Transaction(tx, func(txBus *final.TxBus) error {
//		if err := gtx.Create(&user).Error; err != nil {
//			return err
//		}
//		return txBus.Publish("user.registered", payload)
//	})
//
// bus.Transaction commits (or rolls back) the *sql.Tx itself, and sends the
// messages at once after the commit. The bus is built on the *sql.DB that
// gorm wraps (gdb.DB()), whose driver tells it the database.
//
// It is a package of its own so that the final package does not import
// gorm.
package gormbus

import (
	"database/sql"
	"errors"
	"fmt"

	"gorm.io/gorm"
)

// ErrNoTx is wrapped by the error of SQLTx when the gorm DB holds no
// *sql.Tx: it is not in a transaction, or its connection is a kind that
// SQLTx does not know. The message names what it found.
var ErrNoTx = errors.New("gormbus: no *sql.Tx in the gorm DB")

// SQLTx returns the *sql.Tx of gtx, a gorm DB in a transaction: the result
// of gdb.Begin(), or the argument of the function given to
// gdb.Transaction. It works in gorm's plain mode, where
// gtx.Statement.ConnPool is the *sql.Tx, and in its PrepareStmt mode
// (gorm.Config or gorm.Session), where the ConnPool is a
// *gorm.PreparedStmtTX around it. Otherwise it returns an error wrapping
// ErrNoTx (and gtx.Error, when gorm recorded one, such as a failed Begin).
func SQLTx(gtx *gorm.DB) (*sql.Tx, error) {
	if gtx == nil || gtx.Statement == nil {
		return nil, fmt.Errorf("%w: nil gorm DB", ErrNoTx)
	}
	if gtx.Error != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoTx, gtx.Error)
	}
	pool := gtx.Statement.ConnPool
	// A PreparedStmtTX may wrap another one: a PrepareStmt session opened
	// on a transaction of a PrepareStmt DB.
	for range 8 {
		p, ok := pool.(*gorm.PreparedStmtTX)
		if !ok || p == nil {
			break
		}
		pool = p.Tx
	}
	switch c := pool.(type) {
	case *sql.Tx:
		if c == nil {
			return nil, fmt.Errorf("%w: nil *sql.Tx", ErrNoTx)
		}
		return c, nil
	case *sql.DB, *gorm.PreparedStmtDB:
		return nil, fmt.Errorf("%w: not in a transaction (its connection is a %T): pass the gorm DB that Begin returns, or the one given to Transaction's function", ErrNoTx, c)
	}
	return nil, fmt.Errorf("%w: its connection is a %T, which holds no *sql.Tx that gormbus knows", ErrNoTx, pool)
}
