package spice_test

import (
	"testing"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// The ticket exchange's cost on this machine (issue 4): a fresh
// RSA-1024 key per link (what qemu does, and what the proxy's KeyPool
// does ahead of time), the client's OAEP encryption and the server's
// OAEP decryption.

func BenchmarkGenerateLinkKey(b *testing.B) {
	for b.Loop() {
		if _, err := spice.GenerateLinkKey(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncryptTicket(b *testing.B) {
	k, err := spice.GenerateLinkKey()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := spice.EncryptTicket(k.Public, "hunter2-hunter2-hunter2-hunter2-hunter2-hunter2"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecryptTicket(b *testing.B) {
	k, err := spice.GenerateLinkKey()
	if err != nil {
		b.Fatal(err)
	}
	const pw = "hunter2-hunter2-hunter2-hunter2-hunter2-hunter2"
	ticket, err := spice.EncryptTicket(k.Public, pw)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		got, err := spice.DecryptTicket(k.Private, ticket)
		if err != nil || got != pw {
			b.Fatalf("DecryptTicket = %q, %v", got, err)
		}
	}
}
