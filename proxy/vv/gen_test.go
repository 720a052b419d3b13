package vv

import (
	"math/rand/v2"
	"strings"
)

// gen makes random Files that Render accepts, biased towards the
// characters GKeyFile treats specially.
type gen struct{ r *rand.Rand }

func newGen(seed uint64) *gen { return &gen{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))} }

var genRunes = []string{" ", " ", "\t", "\n", "\r", `\`, `\`, ";", "#", "=", "[", "]", "s", "n", "t", "r",
	"a", "Z", "0", "9", "é", "€", "😀", `"`, "'", ",", "-", ".", "\x7f", "\u00a0", "\u2028"}

func (g *gen) str(max int) string {
	n := g.r.IntN(max + 1)
	var b strings.Builder
	for range n {
		b.WriteString(genRunes[g.r.IntN(len(genRunes))])
	}
	return b.String()
}

// opt returns "" half of the time.
func (g *gen) opt(max int) string {
	if g.r.IntN(2) == 0 {
		return ""
	}
	return g.str(max)
}

func (g *gen) port() int {
	switch g.r.IntN(3) {
	case 0:
		return 0
	case 1:
		return 1 + g.r.IntN(65535)
	}
	return []int{1, 65535, 5900, 5901}[g.r.IntN(4)]
}

var genKeys = []string{"fullscreen", "toggle-fullscreen", "release-cursor", "proxy", "usb-filter", "title[fr]",
	"x-custom", "a b", "enable-usbredir", "versions", "newer-version-url", "x-é", "k[sr@latin]", "disable-channels",
	"jsessionid", "sso-token", "vm-guid", "admin", "host", "ca"}

// raw returns a raw value a reader reads back as is: no control
// character but tab, no leading space or tab.
func (g *gen) raw() string {
	var s string
	switch g.r.IntN(4) {
	case 0:
		s = Escape(g.str(12))
	case 1:
		s = EscapeList(g.list())
	case 2:
		s = []string{`\q`, `a\`, `x\;y`, `1`, `-1,-1,-1,-1,1`, `http://u:p@h:8080`, `a	b`, ``}[g.r.IntN(8)]
	default:
		s = g.str(10)
	}
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 0x20 || c == '\t' {
			b.WriteByte(c)
		}
	}
	return strings.TrimLeft(b.String(), " \t")
}

func (g *gen) list() []string {
	if g.r.IntN(4) == 0 {
		return nil
	}
	n := g.r.IntN(5)
	out := make([]string, n)
	for i := range out {
		if g.r.IntN(2) == 0 {
			out[i] = []string{"main", "display", "inputs", "cursor", "all", ""}[g.r.IntN(6)]
		} else {
			out[i] = g.str(6)
		}
	}
	return out
}

func (g *gen) entries(fieldKeysAllowed bool) []Entry {
	var es []Entry
	seen := map[string]bool{}
	for range g.r.IntN(5) {
		k := genKeys[g.r.IntN(len(genKeys))]
		if seen[k] || !fieldKeysAllowed && isFieldKey(k) {
			continue
		}
		seen[k] = true
		es = append(es, Entry{Key: k, Value: g.raw()})
	}
	return es
}

func (g *gen) file() *File {
	f := &File{
		Type:           []string{"spice", "vnc", "ovirt", "spice", "x"}[g.r.IntN(5)],
		Host:           g.opt(16),
		Port:           g.port(),
		TLSPort:        g.port(),
		Password:       g.opt(59),
		CA:             g.opt(40),
		HostSubject:    g.opt(20),
		Title:          g.opt(20),
		DeleteThisFile: g.r.IntN(2) == 0,
		SecureChannels: g.list(),
		Proxy:          g.opt(16),
		Extra:          g.entries(false),
	}
	if g.r.IntN(3) == 0 {
		f.Type = g.str(8) + "t"
	}
	for _, name := range []string{"ovirt", "x-group", "a b", "é"} {
		if g.r.IntN(4) == 0 {
			f.Groups = append(f.Groups, Group{Name: name, Entries: g.entries(true)})
		}
	}
	return f
}
