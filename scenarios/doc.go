// Package scenarios holds the regression cases, one file each, registered
// by name; `go test ./scenarios` and `harness run` run the same code.
package scenarios
