package postgres

// ClassifyForTest is writeError, for the tests of the error a driver
// reports.
var ClassifyForTest = writeError
