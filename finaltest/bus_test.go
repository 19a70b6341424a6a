package finaltest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/finalbus/final"
	"github.com/finalbus/final/finaltest"
)

// A bus that does not start fails the test, with Start's reason.
func TestNewBusFailsTheTestWhenTheBusDoesNotStart(t *testing.T) {
	db, _ := sqliteFile.open(t)
	msg := failure(t, func(tb finaltest.TB) { finaltest.NewBus(tb, "no spaces allowed", db, final.DefaultOptions()) })
	require.Contains(t, msg, `finaltest: start the bus of "no spaces allowed": `+final.ErrInvalidService.Error())
	msg = failure(t, func(tb finaltest.TB) { finaltest.NewBus(tb, "orders", db, final.Options{}) })
	require.Contains(t, msg, final.ErrInvalidOption.Error())
}
