package static

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Limits that make Parse refuse pathological input promptly.
const (
	// MaxFileSize is the largest sources.yaml Parse reads, checked before
	// any parsing: 256 KiB, about a thousand consoles. yaml.v3 allocates
	// about 250 bytes per node, so the densest YAML of this size (a flow
	// list of 128k one-letter items) still costs about 64 MiB and 0.1 s to
	// parse; at 4 MiB that would be a gigabyte.
	MaxFileSize = 256 << 10
	// MaxDepth is the deepest nesting of lists and mappings accepted. A
	// static source needs 4 (sources, source, consoles, console).
	MaxDepth = 32
	// MaxProblems is how many problems a File lists; one more says the
	// list was cut.
	MaxProblems = 1000
)

// File is a parsed sources.yaml.
type File struct {
	// Name is the file name problems carry.
	Name string
	// Sources are the entries that are mappings, in file order, errored
	// ones included.
	Sources []Source
	// Problems lists every problem in file order: those of the document
	// itself (syntax, not a list, an entry that is not a mapping, …) and
	// those of each source.
	Problems []Problem
}

// Err returns nil when the file has no errors (warnings are fine), or a
// *ParseError listing them.
func (f *File) Err() error {
	if errs := f.Errors(); len(errs) > 0 {
		return &ParseError{File: f.Name, Problems: errs}
	}
	return nil
}

// Errors returns the problems of severity error.
func (f *File) Errors() []Problem { return f.filter(SeverityError) }

// Warnings returns the problems of severity warning.
func (f *File) Warnings() []Problem { return f.filter(SeverityWarning) }

func (f *File) filter(s Severity) []Problem {
	var out []Problem
	for _, p := range f.Problems {
		if p.Severity == s {
			out = append(out, p)
		}
	}
	return out
}

// Consoles returns the consoles of every source that Load serves (static,
// not errored), keyed by (source, uuid).
func (f *File) Consoles() map[Key]Console {
	out := make(map[Key]Console)
	for i := range f.Sources {
		s := &f.Sources[i]
		cs, err := s.Load()
		if err != nil {
			continue
		}
		for _, c := range cs {
			out[s.Key(c.UUID)] = c
		}
	}
	return out
}

// ParseFile reads and parses the sources.yaml at path. It reads at most
// MaxFileSize+1 bytes. It returns a nil *File only when the file cannot be
// read; otherwise see Parse.
func ParseFile(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	size := int64(-1)
	if st, err := fh.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	if size > MaxFileSize {
		return tooLarge(path, size)
	}
	f, err := ParseReader(path, fh)
	if f == nil {
		return nil, &os.PathError{Op: "read", Path: path, Err: err}
	}
	return f, err
}

// ParseReader parses the sources.yaml read from r, named name in problems.
// It reads at most MaxFileSize+1 bytes. It returns a nil *File only when
// reading fails; otherwise see Parse.
func ParseReader(name string, r io.Reader) (*File, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return tooLarge(name, -1)
	}
	return Parse(name, data)
}

// Parse parses data, the content of the sources.yaml called filename.
//
// The *File is never nil: it holds every source that could be read and
// every problem found, all of them, not only the first. The error is
// File.Err(): nil, or a *ParseError when there is at least one error.
// Errors in one source leave the others usable.
func Parse(filename string, data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return tooLarge(filename, int64(len(data)))
	}
	f := &File{Name: filename}
	p := &parser{file: f, data: data}
	p.parse()
	p.finish()
	return f, f.Err()
}

func tooLarge(name string, size int64) (*File, error) {
	what := "is larger than"
	if size >= 0 {
		what = fmt.Sprintf("is %d bytes, more than", size)
	}
	f := &File{Name: name, Problems: []Problem{{
		File: name, Line: 1, Col: 1, Field: "file", Err: ErrTooLarge,
		Message: fmt.Sprintf("%s the %d bytes (%d KiB) a sources.yaml may have; it was not parsed", what, MaxFileSize, MaxFileSize>>10),
	}}}
	return f, f.Err()
}

// parser holds the state of one Parse.
type parser struct {
	file *File
	data []byte
	// cur is the source whose entry is being read: its problems are
	// recorded on it as well as on the file.
	cur *Source
	// count of problems seen; past MaxProblems they are dropped.
	count     int
	truncated bool
	// errs counts errors, listed or not.
	errs int
	// aliases reported in the current source, by anchor name.
	aliases map[string]bool
	// uuidPos[i][j] is where Sources[i].Consoles[j]'s uuid is written.
	uuidPos [][]uuidAt
}

type pos struct{ line, col int }

func (p *parser) add(sev Severity, line, col int, field string, sentinel error, msg string) {
	pr := Problem{File: p.file.Name, Line: line, Col: col, Field: field, Message: msg, Severity: sev, Err: sentinel}
	p.count++
	if sev == SeverityError {
		p.errs++
	}
	if p.count > MaxProblems {
		cut := Problem{File: p.file.Name, Line: line, Col: col, Field: field, Err: ErrTooManyProblems,
			Message: fmt.Sprintf("too many problems; only the first %d are listed", MaxProblems)}
		if !p.truncated {
			p.truncated = true
			p.file.Problems = append(p.file.Problems, cut)
		}
		if p.cur != nil && sev == SeverityError && !slices.ContainsFunc(p.cur.Errors, isTruncation) {
			p.cur.Errors = append(p.cur.Errors, cut)
		}
		return
	}
	p.file.Problems = append(p.file.Problems, pr)
	if p.cur != nil {
		if sev == SeverityError {
			p.cur.Errors = append(p.cur.Errors, pr)
		} else {
			p.cur.Warnings = append(p.cur.Warnings, pr)
		}
	}
}

func isTruncation(p Problem) bool { return p.Err == ErrTooManyProblems }

func (p *parser) errorf(n *yaml.Node, field string, sentinel error, format string, args ...any) {
	p.add(SeverityError, n.Line, n.Column, field, sentinel, fmt.Sprintf(format, args...))
}

func (p *parser) warnf(n *yaml.Node, field string, sentinel error, format string, args ...any) {
	p.add(SeverityWarning, n.Line, n.Column, field, sentinel, fmt.Sprintf(format, args...))
}

// finish sorts the problems into file order.
func (p *parser) finish() {
	byPos := func(a, b Problem) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	}
	slices.SortStableFunc(p.file.Problems, byPos)
	for i := range p.file.Sources {
		slices.SortStableFunc(p.file.Sources[i].Errors, byPos)
		slices.SortStableFunc(p.file.Sources[i].Warnings, byPos)
	}
}

func (p *parser) parse() {
	if !p.checkEncoding() {
		return
	}
	root, ok := p.decode()
	if !ok {
		return
	}
	p.sources(root)
}

// checkEncoding refuses what is not UTF-8 YAML text before yaml.v3 sees
// it, with the exact position (yaml.v3 reports these without one).
func (p *parser) checkEncoding() bool {
	d := p.data
	for _, bom := range []struct {
		prefix, name string
	}{{"\x00\x00\xFE\xFF", "UTF-32"}, {"\xFF\xFE\x00\x00", "UTF-32"}, {"\xFE\xFF", "UTF-16"}, {"\xFF\xFE", "UTF-16"}} {
		if bytes.HasPrefix(d, []byte(bom.prefix)) {
			p.add(SeverityError, 1, 1, "file", ErrEncoding, fmt.Sprintf("is %s encoded; save it as UTF-8 (Kerbside reads UTF-8 only)", bom.name))
			return false
		}
	}
	start := 0
	if bytes.HasPrefix(d, []byte("\xEF\xBB\xBF")) {
		start = 3
	}
	first, n := -1, 0
	var what string
	for i := start; i < len(d); {
		r, w := utf8.DecodeRune(d[i:])
		switch {
		case r == utf8.RuneError && w <= 1:
			if first < 0 {
				first, what = i, fmt.Sprintf("has a byte that is not UTF-8 (0x%02X)", d[i])
			}
			n++
		case !yamlRune(r):
			if first < 0 {
				first, what = i, fmt.Sprintf("has %s, which YAML does not allow unescaped", describeRune(r))
			}
			n++
		}
		i += w
	}
	if first < 0 {
		return true
	}
	line, col := position(d, first)
	msg := what
	if n > 1 {
		msg += fmt.Sprintf(" (and %d more such bytes or characters)", n-1)
	}
	p.add(SeverityError, line, col, "file", ErrEncoding, msg+"; sources.yaml must be UTF-8 text, is this a binary file?")
	return false
}

// position returns the 1-based line and column (in characters) of byte
// offset off, counting line breaks as yaml.v3 does.
func position(d []byte, off int) (line, col int) {
	line, col = 1, 1
	if bytes.HasPrefix(d, []byte("\xEF\xBB\xBF")) {
		d, off = d[3:], off-3
	}
	for i := 0; i < off && i < len(d); {
		r, w := utf8.DecodeRune(d[i:])
		switch r {
		case '\r':
			if i+1 < len(d) && d[i+1] == '\n' {
				w = 2
			}
			fallthrough
		case '\n', 0x85, 0x2028, 0x2029:
			line, col = line+1, 1
		default:
			col++
		}
		i += w
	}
	return line, col
}

// decode runs yaml.v3 and returns the root node of the one document.
// yaml.v3 builds Nodes without expanding aliases, so an alias bomb costs
// only its own size here; aliases are refused later, by walk.
func (p *parser) decode() (root *yaml.Node, ok bool) {
	dec := yaml.NewDecoder(bytes.NewReader(p.data))
	var doc yaml.Node
	err := safeDecode(dec, &doc)
	switch {
	case err == io.EOF:
		what := "the file is empty"
		if len(bytes.TrimSpace(p.data)) > 0 {
			what = "the file has only comments"
		}
		p.add(SeverityError, 1, 1, "sources", ErrType, what+"; a sources.yaml is a list of sources (write [] for none)")
		return nil, false
	case err != nil:
		p.syntax(err)
		return nil, false
	}
	var next yaml.Node
	switch err := safeDecode(dec, &next); {
	case err == nil:
		line, col := next.Line, next.Column
		if len(next.Content) > 0 {
			line, col = next.Content[0].Line, next.Content[0].Column
		}
		p.add(SeverityError, line, col, "sources", ErrSyntax, "a second YAML document; a sources.yaml is one document (Kerbside's yaml.safe_load refuses more)")
	case err != io.EOF:
		p.syntax(err)
	}
	if len(doc.Content) == 0 {
		p.add(SeverityError, 1, 1, "sources", ErrType, "the file has no content; a sources.yaml is a list of sources (write [] for none)")
		return nil, false
	}
	return doc.Content[0], true
}

// safeDecode turns a panic inside yaml.v3 into an error: a bug there must
// not take down a proxy that reads a bad file.
func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: internal error in yaml.v3: %v", r)
		}
	}()
	return dec.Decode(n)
}

var (
	yamlLineErr  = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	yamlErr      = regexp.MustCompile(`^yaml: (.*)$`)
	unknownAlias = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
)

// syntax records a yaml.v3 syntax error. yaml.v3 reports a line (and not
// always the problem's own: sometimes that of the enclosing construct)
// and never a column, so the column is the line's first character, except
// for the two cases located exactly: a tab in indentation and an unknown
// anchor.
func (p *parser) syntax(err error) {
	msg, line := err.Error(), 0
	if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else if m := yamlErr.FindStringSubmatch(msg); m != nil {
		msg = m[1]
	}
	col := 1
	if line > 0 {
		text := lineText(p.data, line)
		col = 1 + len([]rune(text)) - len([]rune(strings.TrimLeft(text, " ")))
		if tab := strings.IndexByte(text, '\t'); tab >= 0 && strings.Trim(text[:tab], " ") == "" &&
			(strings.Contains(msg, "tab") || strings.Contains(msg, "cannot start any token")) {
			col = 1 + len([]rune(text[:tab]))
			msg = "a tab character in indentation; YAML indents with spaces only (yaml.v3: " + msg + ")"
		}
	}
	if m := unknownAlias.FindStringSubmatch(msg); m != nil {
		if i := bytes.Index(p.data, []byte("*"+m[1])); i >= 0 {
			line, col = position(p.data, i)
		}
		msg = fmt.Sprintf("alias *%s refers to no anchor; YAML aliases are not allowed in sources.yaml anyway", m[1])
		p.add(SeverityError, max(line, 1), col, "yaml", ErrAlias, msg)
		return
	}
	p.add(SeverityError, max(line, 1), col, "yaml", ErrSyntax, msg)
}

// lineText returns line n (1-based) of d without its line break.
func lineText(d []byte, n int) string {
	for i := 1; i < n; i++ {
		j := bytes.IndexAny(d, "\r\n")
		if j < 0 {
			return ""
		}
		if d[j] == '\r' && j+1 < len(d) && d[j+1] == '\n' {
			j++
		}
		d = d[j+1:]
	}
	if j := bytes.IndexAny(d, "\r\n"); j >= 0 {
		d = d[:j]
	}
	return string(d)
}
