// Command init is the Linux test guest's /init: see package guestagent.
package main

import "github.com/spiceharness/spiceharness/internal/guestagent"

func main() { guestagent.Run(guestagent.Config{}) }
