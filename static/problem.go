package static

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. Every Problem carries one of them in Err, so callers can
// branch with errors.Is on a single Problem, on a *ParseError or on a
// *SourceError (both unwrap to their problems).
var (
	// ErrInvalid marks a file or source that has at least one error.
	ErrInvalid = errors.New("invalid sources.yaml")
	// ErrUnsupportedType marks a source of a Kerbside type other than
	// static (shakenfist, ovirt, openstack): kept, never served.
	ErrUnsupportedType = errors.New("unsupported source type")

	// ErrTooLarge: the file is larger than MaxFileSize.
	ErrTooLarge = errors.New("file too large")
	// ErrEncoding: the file is not UTF-8 text YAML accepts (binary data,
	// control characters, UTF-16).
	ErrEncoding = errors.New("not a YAML text file")
	// ErrSyntax: yaml.v3 cannot parse the document.
	ErrSyntax = errors.New("YAML syntax error")
	// ErrAlias: the document uses a YAML alias (*name) or merge key.
	ErrAlias = errors.New("YAML aliases are not allowed")
	// ErrTooDeep: collections nested deeper than MaxDepth.
	ErrTooDeep = errors.New("nested too deeply")
	// ErrTooManyProblems: listing stopped after MaxProblems problems.
	ErrTooManyProblems = errors.New("too many problems")
	// ErrType: a value has the wrong YAML type (string, integer, list, …).
	ErrType = errors.New("wrong type")
	// ErrMissing: a required key is absent.
	ErrMissing = errors.New("missing required key")
	// ErrUnknownKey: a key the static source format does not define.
	ErrUnknownKey = errors.New("unknown key")
	// ErrDuplicateKey: the same key twice in one mapping.
	ErrDuplicateKey = errors.New("duplicate key")
	// ErrValue: a value of the right type that is out of range or malformed.
	ErrValue = errors.New("invalid value")
	// ErrAmbiguous: a plain scalar that YAML 1.1 readers such as Kerbside's
	// PyYAML read as another type than yaml.v3 does.
	ErrAmbiguous = errors.New("ambiguous plain scalar")
	// ErrDuplicate: a source name or console uuid defined more than once.
	ErrDuplicate = errors.New("duplicate definition")
)

// Severity says whether a Problem makes its source (or file) unusable.
type Severity int

const (
	// SeverityError marks the source, or the whole file, as errored.
	SeverityError Severity = iota
	// SeverityWarning is worth fixing but changes nothing that is served.
	SeverityWarning
)

func (s Severity) String() string {
	switch s {
	case SeverityError:
		return "error"
	case SeverityWarning:
		return "warning"
	}
	return "Severity(" + strconv.Itoa(int(s)) + ")"
}

// Problem is one thing wrong with a sources.yaml, at a position.
//
// Line and Col are 1-based; Col counts characters (runes), as yaml.v3
// does. Both are 0 for a problem found in a value built in Go (see
// Source.Validate), which has no position. Field is the path of the value
// in the document: "sources[0].consoles[1].insecure_port" (indexes are
// 0-based), "sources" for the document itself, "yaml" for a syntax error,
// "file" for size and encoding.
type Problem struct {
	File     string
	Line     int
	Col      int
	Field    string
	Message  string
	Severity Severity
	// Err is the sentinel this problem is an instance of (ErrType, …).
	Err error
}

// String returns "file:line:col: field: message", the form `harness
// validate` prints, with "warning: " in front of the message of a warning.
// Without a position it is "field: message".
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "%s:%d:%d: ", p.File, p.Line, p.Col)
	} else if p.File != "" {
		b.WriteString(p.File + ": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	if p.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Error makes a Problem usable as an error; it is the same as String.
func (p Problem) Error() string { return p.String() }

// Unwrap returns the sentinel (ErrType, ErrMissing, …).
func (p Problem) Unwrap() error { return p.Err }

// ParseError is returned by Parse and ParseFile (and File.Err) when the
// file has at least one error. It matches ErrInvalid with errors.Is, and
// each of its problems' sentinels too.
type ParseError struct {
	File string
	// Problems are the errors (not the warnings), in file order.
	Problems []Problem
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s: %s: %s, the first: %s", e.File, ErrInvalid, plural(len(e.Problems), "error"), e.Problems[0])
}

// Is reports whether target is ErrInvalid.
func (e *ParseError) Is(target error) bool { return target == ErrInvalid }

// Unwrap returns the problems, so errors.Is(err, ErrAlias) and
// errors.As(err, &problem) look into them.
func (e *ParseError) Unwrap() []error { return problemErrors(e.Problems) }

// SourceError is returned by Source.Load and Source.Err for a source that
// cannot be served: its Err is ErrInvalid (Problems lists the errors) or
// ErrUnsupportedType (Problems is empty).
type SourceError struct {
	Source   string
	Type     string
	Err      error
	Problems []Problem
}

func (e *SourceError) Error() string {
	if errors.Is(e.Err, ErrUnsupportedType) {
		return fmt.Sprintf("source %q: %s %q: only type static is served", e.Source, e.Err, e.Type)
	}
	if len(e.Problems) == 0 {
		return fmt.Sprintf("source %q: %s", e.Source, e.Err)
	}
	return fmt.Sprintf("source %q: %s: %s, the first: %s", e.Source, e.Err, plural(len(e.Problems), "error"), e.Problems[0])
}

// Unwrap returns Err followed by the problems.
func (e *SourceError) Unwrap() []error { return append([]error{e.Err}, problemErrors(e.Problems)...) }

func problemErrors(ps []Problem) []error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errs
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
