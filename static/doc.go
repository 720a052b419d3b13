// Package static is the model of Kerbside's sources.yaml and its
// `type: static` source: a strict parser that reports every problem with
// file:line:col, validation, an emitter that writes a commented file which
// parses back to the same value, and the static source driver that feeds
// consoles (tickets included) to the console store.
//
// It is not a general YAML library and knows nothing of qemu or the proxy.
package static
