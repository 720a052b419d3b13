// Command harness is the spice-harness CLI: up, serve, run, emit-example,
// validate and version.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "harness: not built yet")
	os.Exit(2)
}
