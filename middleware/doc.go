// Package middleware holds common middleware for final subscriptions, each a
// final.HandlerFunc:
//
//	bus.Subscribe("order.created").
//		Middleware(middleware.Logging(logger), middleware.CorrelationID(), middleware.Timeout(5*time.Second)).
//		Handler(handle)
//
// Panic recovery is built into the bus and needs no middleware.
package middleware
