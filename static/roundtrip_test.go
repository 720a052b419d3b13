package static

import (
	"bytes"
	"math/rand"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/quick"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var cmpEmpty = cmpopts.EquateEmpty()

// awkward are strings that trip YAML writers and readers up.
var awkward = []string{
	":", "a: b", "a:b", "- x", "'", "''", `"`, `\`, `\n`, "#", " # not a comment", "a #b", "  leading", "trailing  ",
	"null", "Null", "~", "yes", "No", "on", "OFF", "y", "true", "0x10", "010", "0o17", "1_000", "1e3", ".inf", ".NaN", "12:30",
	"2001-01-01", "2001-12-14t21:59:43.10-05:00", "=", "<<", "*alias", "&anchor", "!tag", "!!str", "%TAG", "@", "`", "{a}", "[a]",
	"{", "]", ",", "?", "? x", "|", ">", "|-", "---", "...", "é", "日本語", "😀", "\u00a0", "\uE000", "\uFFFD", "Ω≈ç√", "-", "--",
	"0", "-1", "+1", "1.0", "[]", "{}", "a\\b", `C=XX,O=a "b",CN=c`, "key=value", "%", "&", "*", "!", "|x", ">x",
}

// runeRanges are the ranges random runes come from; checkText keeps only
// what a value may hold.
var runeRanges = [][2]rune{{0x20, 0x7E}, {0x20, 0x7E}, {0x20, 0x7E}, {0xA0, 0x17F}, {0x370, 0x3FF}, {0x4E00, 0x4E80}, {0xFFF0, 0xFFFF}, {0x1F600, 0x1F64F}, {0, 0x1F}}

func randText(r *rand.Rand) string {
	var b strings.Builder
	for n := r.Intn(4); n >= 0; n-- {
		if r.Intn(3) == 0 {
			b.WriteString(awkward[r.Intn(len(awkward))])
			continue
		}
		for k := r.Intn(6); k >= 0; k-- {
			rg := runeRanges[r.Intn(len(runeRanges))]
			if c := rg[0] + rune(r.Intn(int(rg[1]-rg[0]+1))); textRune(c) {
				b.WriteRune(c)
			}
		}
	}
	return b.String()
}

func segment(r *rand.Rand) string {
	s := strings.TrimSpace(strings.ReplaceAll(randText(r), "/", "|"))
	if s == "" || checkSegment(s) != "" {
		return "x" + strconv.Itoa(r.Intn(100))
	}
	return s
}

func host(r *rand.Rand) string {
	s := strings.Map(func(c rune) rune {
		if unicode.IsSpace(c) {
			return -1
		}
		return c
	}, randText(r))
	if s == "" {
		return "127.0.0.1"
	}
	return s
}

func nonEmpty(r *rand.Rand) string {
	if s := randText(r); s != "" {
		return s
	}
	return "n"
}

func ticket(r *rand.Rand) string {
	s := nonEmpty(r)
	for len(s) > MaxTicketLen {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	if s == "" {
		return "t"
	}
	return s
}

func caCert(r *rand.Rand, certs []string) string {
	switch r.Intn(6) {
	case 0:
		return strings.TrimSuffix(certs[0], "\n")
	case 1:
		return certs[0] + certs[1]
	case 2:
		return strings.ReplaceAll(certs[1], "\n", "\r\n")
	case 3:
		return "\n  " + certs[0] + "\n\n"
	case 4:
		return certs[1]
	}
	return ""
}

// genSourceList makes a valid list of sources full of awkward values.
func genSourceList(r *rand.Rand, certs []string) []Source {
	var sources []Source
	names := map[string]bool{}
	var uuids []string
	for i := r.Intn(4); i >= 0; i-- {
		name := segment(r)
		for names[name] {
			name += "-" + strconv.Itoa(r.Intn(10))
		}
		names[name] = true
		if r.Intn(5) == 0 {
			sources = append(sources, Source{Name: name, Type: kerbsideTypes[1+r.Intn(3)]})
			continue
		}
		s := Source{Name: name, Type: TypeStatic, CACert: caCert(r, certs)}
		seen := map[string]bool{}
		for j := r.Intn(5); j > 0; j-- {
			uuid := segment(r)
			if len(uuids) > 0 && r.Intn(4) == 0 {
				uuid = uuids[r.Intn(len(uuids))] // the same uuid in two sources is fine
			}
			for seen[uuid] {
				uuid += "-" + strconv.Itoa(r.Intn(10))
			}
			seen[uuid] = true
			uuids = append(uuids, uuid)
			c := Console{UUID: uuid, Name: nonEmpty(r), Hypervisor: host(r), HypervisorIP: host(r), InsecurePort: 1 + r.Intn(MaxPort), Ticket: ticket(r)}
			if r.Intn(2) == 0 {
				c.SecurePort = 1 + r.Intn(MaxPort)
				if c.SecurePort == c.InsecurePort {
					c.SecurePort = c.InsecurePort%MaxPort + 1
				}
			}
			if r.Intn(3) == 0 {
				c.HostSubject = nonEmpty(r)
			}
			s.Consoles = append(s.Consoles, c)
		}
		sources = append(sources, s)
	}
	return sources
}

// genSources returns n generated source lists from seed.
func genSources(t testing.TB, n int, seed int64) [][]Source {
	r := rand.New(rand.NewSource(seed))
	var out [][]Source
	for range n {
		out = append(out, genSourceList(r, testCerts(t)))
	}
	return out
}

// sourceList is a testing/quick generator of valid source lists.
type sourceList []Source

var quickCerts []string

func (sourceList) Generate(r *rand.Rand, _ int) reflect.Value {
	return reflect.ValueOf(sourceList(genSourceList(r, quickCerts)))
}

// TestEmitParseRoundTrip is the property Parse(Emit(x)) == x.
func TestEmitParseRoundTrip(t *testing.T) {
	quickCerts = testCerts(t)
	prop := func(sl sourceList) bool {
		sources := []Source(sl)
		for i := range sources {
			if err := sources[i].Validate(); err != nil {
				t.Fatalf("generator made an invalid source: %v", err)
			}
		}
		var b bytes.Buffer
		if err := Emit(&b, sources); err != nil {
			t.Errorf("Emit: %v", err)
			return false
		}
		f, err := Parse("rt.yaml", b.Bytes())
		if err != nil {
			t.Errorf("Parse(Emit(x)): %v\n%s", err, b.String())
			return false
		}
		if diff := cmp.Diff(sources, f.Sources, modelOnly); diff != "" {
			t.Errorf("unexpected Parse(Emit(x)) (-want +got):\n%s\n%s", diff, b.String())
			return false
		}
		return true
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 1000}); err != nil {
		t.Error(err)
	}
}

func TestGeneratorIsAwkward(t *testing.T) {
	// Guard against a generator that drifts into only easy strings.
	var all strings.Builder
	for _, sl := range genSources(t, 200, 1) {
		for _, s := range sl {
			for _, c := range s.Consoles {
				all.WriteString(c.Ticket + c.Name + c.UUID)
			}
		}
	}
	for _, want := range []string{"null", "yes", ": ", "#", "'", `"`, "0x10", "😀"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("200 generated lists never contain %q", want)
		}
	}
}
