// Package static is the model of Kerbside's sources.yaml and its
// `type: static` source: a strict parser that reports every problem with
// file:line:col, validation, an emitter that writes a commented file which
// parses back to the same value, and the static source driver that feeds
// consoles (tickets included) to the console store.
//
// It is not a general YAML library and knows nothing of qemu or the proxy.
//
// # Typical use
//
// The console store loads every source; an errored source serves nothing
// and leaves the others working:
//
//	f, err := static.ParseFile("sources.yaml")
//	if f == nil {
//		return err // unreadable
//	}
//	for _, p := range f.Problems {
//		log.Print(p) // file:line:col: field: message
//	}
//	for i := range f.Sources {
//		src := &f.Sources[i]
//		consoles, err := src.Load()
//		if err != nil { // *static.SourceError: ErrInvalid or ErrUnsupportedType
//			store.MarkErrored(src.Name, err)
//			continue
//		}
//		for _, c := range consoles {
//			store.Put(src.Key(c.UUID), c, src.CACert)
//		}
//	}
//
// `harness up` writes what it booted:
//
//	err := static.Emit(w, []static.Source{{Name: "harness", Type: static.TypeStatic, Consoles: consoles}})
//
// # What Parse checks
//
// The file is a YAML list of sources, each with `source` (a unique name) and
// `type`. Types shakenfist, ovirt and openstack are kept and reported as
// unsupported (Source.Supported is false), never errors, so a real Kerbside
// file loads; any other type is an error, as in Kerbside. A static source
// has `consoles` (a list, possibly empty) and an optional `ca_cert` (PEM
// certificates or null), and no other keys. A console has the required
// keys uuid, name, hypervisor, hypervisor_ip (strings), insecure_port (an
// integer) and ticket (a string), and the optional secure_port (an integer
// or null) and host_subject (a string or null); an unknown key is an error
// naming it, with a suggestion for a typo. Ports are 1-65535, written in
// decimal; a ticket is 1-59 bytes, because spice-server keeps 59 bytes of a
// password and a 60-byte ticket silently never matches. Plain scalars that
// YAML 1.1 readers (Kerbside's PyYAML) read as another type, such as a
// ticket `yes` or a name `0x10`, are errors: quote them.
//
// A uuid defined twice in one source is a warning and the last definition
// wins; the same uuid in two sources is a warning and both stay reachable,
// since consoles are keyed by (source, uuid). A source name used twice is an
// error.
//
// # Pathological input
//
// Parse refuses, promptly and before allocating much: files over
// MaxFileSize (checked before parsing; ParseFile reads no more than that),
// anything that is not UTF-8 YAML text, YAML aliases and merge keys (yaml.v3
// keeps an alias as one node, so an alias bomb costs its own size and is
// reported, never expanded), and nesting deeper than MaxDepth. It lists at
// most MaxProblems problems.
package static
