// Package spice implements the SPICE wire protocol a proxy and a test
// client need: link messages, ticket crypto, data headers, common
// messages, and a Go SPICE client.
package spice
