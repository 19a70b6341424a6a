package postgres

// ClassifyForTest is wrapError, for the tests of the error a driver
// reports.
var ClassifyForTest = wrapError
