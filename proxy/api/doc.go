// Package api serves Kerbside-compatible `.vv` routes and JSON listings
// over gorilla/mux.
package api
