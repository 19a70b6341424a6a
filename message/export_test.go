package message

// Plausible is plausible, for the differential tests of message_test.
var Plausible = plausible
