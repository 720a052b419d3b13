package spice

import (
	"crypto/rand"
	"crypto/sha1"
)

var (
	sha1New    = sha1.New
	randReader = rand.Reader
)
