package message

import "github.com/finalbus/final/internal/msgpackcheck"

// Plausible is msgpackcheck.Plausible, for the differential tests of
// message_test.
var Plausible = msgpackcheck.Plausible
