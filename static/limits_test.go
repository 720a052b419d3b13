package static

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// HugeDocument returns a valid-looking sources.yaml of exactly size bytes.
func hugeDocument(size int) []byte {
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString("- source: huge\n  type: static\n  consoles:\n")
	for b.Len() < size {
		b.WriteString(console1)
	}
	return b.Bytes()[:size]
}

// billionLaughs is the classic alias bomb: 9 levels of 9 aliases, 9^9
// strings once expanded, in a source spice-harness does not otherwise read.
const billionLaughs = `- source: lol
  type: shakenfist
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
`

// measure runs fn and returns the bytes it allocated and how long it took.
func measure(fn func()) (allocated uint64, took time.Duration) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	fn()
	took = time.Since(start)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, took
}

// The refusals below are asserted on allocation, never on time: the times
// are logged (go test -v -run Refuse ./static) for the record.

func TestRefuseHugeDocument(t *testing.T) {
	data := hugeDocument(10 << 20)
	var err error
	alloc, took := measure(func() { _, err = Parse("huge.yaml", data) })
	t.Logf("Parse of a 10 MiB document: refused in %v, %d bytes allocated", took, alloc)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Parse error = %v, want ErrTooLarge", err)
	}
	if alloc > 16<<20 {
		t.Errorf("Parse of a 10 MiB document allocated %d bytes, want < 16 MiB", alloc)
	}

	path := filepath.Join(t.TempDir(), "huge.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	alloc, took = measure(func() { _, err = ParseFile(path) })
	t.Logf("ParseFile of a 10 MiB file: refused in %v, %d bytes allocated", took, alloc)
	if !errors.Is(err, ErrTooLarge) || alloc > 1<<20 {
		t.Errorf("ParseFile = %v after allocating %d bytes, want ErrTooLarge and < 1 MiB (the size is known before reading)", err, alloc)
	}

	alloc, took = measure(func() { _, err = ParseReader("pipe", bytes.NewReader(data)) })
	t.Logf("ParseReader of a 10 MiB stream: refused in %v, %d bytes allocated", took, alloc)
	if !errors.Is(err, ErrTooLarge) || alloc > 8<<20 {
		t.Errorf("ParseReader = %v after allocating %d bytes, want ErrTooLarge and < 8 MiB (it reads MaxFileSize+1 bytes at most)", err, alloc)
	}
}

func TestRefuseAliasBomb(t *testing.T) {
	for name, doc := range map[string]string{
		"in a source":           billionLaughs,
		"as the whole document": strings.ReplaceAll(strings.SplitN(billionLaughs, "\n", 3)[2], "  ", ""),
	} {
		t.Run(name, func(t *testing.T) {
			var (
				f   *File
				err error
			)
			alloc, took := measure(func() { f, err = Parse("bomb.yaml", []byte(doc)) })
			t.Logf("alias bomb %s: refused in %v, %d bytes allocated", name, took, alloc)
			if !errors.Is(err, ErrAlias) {
				t.Fatalf("Parse error = %v, want ErrAlias", err)
			}
			if alloc > 1<<20 {
				t.Errorf("alias bomb allocated %d bytes, want < 1 MiB: it must never be expanded", alloc)
			}
			if n := len(f.Problems); n > 9 {
				t.Errorf("%d problems for one bomb, want at most one per anchor:\n%s", n, strings.Join(lines(f.Problems), "\n"))
			}
		})
	}
}

func TestRefuseDeepNesting(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want error
	}{
		{"deeper than MaxDepth", "- source: sf\n  type: shakenfist\n  x: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n", ErrTooDeep},
		{"deeper than yaml.v3 allows", strings.Repeat("[", 20000) + strings.Repeat("]", 20000), ErrSyntax},
		{"block nesting", strings.Repeat("- ", 5000) + "x\n", ErrTooDeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				f   *File
				err error
			)
			alloc, took := measure(func() { f, err = Parse("deep.yaml", []byte(tt.doc)) })
			t.Logf("%s (%d bytes): refused in %v, %d bytes allocated", tt.name, len(tt.doc), took, alloc)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
			if len(f.Problems) > 2 {
				t.Errorf("got %d problems, want the depth reported once:\n%s", len(f.Problems), strings.Join(lines(f.Problems), "\n"))
			}
			if alloc > 16<<20 {
				t.Errorf("allocated %d bytes, want < 16 MiB", alloc)
			}
		})
	}
}

func TestMaxProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString("- source: lab\n  type: static\n  consoles:\n")
	for range 2 * MaxProblems {
		b.WriteString("    - {}\n")
	}
	f, err := Parse("many.yaml", []byte(b.String()))
	if !errors.Is(err, ErrTooManyProblems) {
		t.Fatalf("Parse error = %v, want one matching ErrTooManyProblems", err)
	}
	if got := len(f.Problems); got != MaxProblems+1 {
		t.Errorf("got %d problems, want MaxProblems+1 = %d", got, MaxProblems+1)
	}
	if last := f.Problems[len(f.Problems)-1]; !errors.Is(last, ErrTooManyProblems) {
		t.Errorf("last problem = %v, want the truncation notice", last)
	}
	if !f.Sources[0].Errored() {
		t.Error("source not errored")
	}
}

// TestWorstCaseUnderLimit records what the densest YAML just under
// MaxFileSize costs yaml.v3 (logged, bounded generously).
func TestWorstCaseUnderLimit(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("- source: sf\n  type: shakenfist\n  x: [")
	for b.Len() < MaxFileSize-2 {
		b.WriteString("a,")
	}
	b.Truncate(MaxFileSize - 2)
	b.WriteString("]\n")
	var err error
	alloc, took := measure(func() { _, err = Parse("dense.yaml", b.Bytes()) })
	t.Logf("densest accepted-size document (%d bytes, a flow list of ~%d items): parsed in %v, %d bytes allocated", b.Len(), b.Len()/2, took, alloc)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if alloc > 128<<20 {
		t.Errorf("allocated %d bytes, want < 128 MiB", alloc)
	}
}
