package static

// Named reports whether the source has a valid name (a `source` key that
// is a usable path segment). The problems of an entry without one cannot
// be pinned on any source: File.DocumentErrors counts them as the
// document's.
func (s *Source) Named() bool { return s.Name != "" && checkSegment(s.Name) == "" }

// DocumentErrors returns the errors that belong to no named source, in
// file order: size, encoding and syntax, the document's shape (not a
// list, a second document), list entries that are not mappings, and
// every error of an entry without a valid name, and the note that the
// list of problems was cut (what was cut may be any of these).
//
// When there are none, the named sources of f are exactly the sources
// the file defines, even if some of them have errors: a reloader may
// then drop the sources it no longer finds. When there are some, a
// source missing from f may only be hidden by a broken entry.
func (f *File) DocumentErrors() []Problem {
	type at struct {
		line, col  int
		field, msg string
	}
	owned := map[at]int{}
	for i := range f.Sources {
		if !f.Sources[i].Named() {
			continue
		}
		for _, p := range f.Sources[i].Errors {
			owned[at{p.Line, p.Col, p.Field, p.Message}]++
		}
	}
	var out []Problem
	for _, p := range f.Errors() {
		k := at{p.Line, p.Col, p.Field, p.Message}
		if owned[k] > 0 && !isTruncation(p) {
			owned[k]--
			continue
		}
		out = append(out, p)
	}
	return out
}
