package static

import (
	"regexp"
	"strconv"
	"strings"
)

// The keys of a static source and of its consoles, in the order Emit
// writes them (Kerbside's own example's order).
var (
	sourceKeys          = []string{"source", "type", "ca_cert", "consoles"}
	consoleRequiredKeys = []string{"uuid", "name", "hypervisor", "hypervisor_ip", "insecure_port", "ticket"}
	consoleOptionalKeys = []string{"secure_port", "host_subject"}
	consoleKeys         = append(append([]string(nil), consoleRequiredKeys...), consoleOptionalKeys...)
)

var simpleKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// childField returns the field path of key inside the mapping at path:
// "sources[0].consoles" or, for an awkward key, `sources[0]["a b"]`.
func childField(path, key string) string {
	if simpleKey.MatchString(key) {
		return path + "." + key
	}
	return path + "[" + quote(key) + "]"
}

func indexField(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// quote quotes s for a message, shortened to 40 runes.
func quote(s string) string {
	const max = 40
	if r := []rune(s); len(r) > max {
		return strconv.Quote(string(r[:max])) + "…"
	}
	return strconv.Quote(s)
}

// suggest returns the candidate closest to word when it is a plausible
// typo (case, one or two edits, a transposition), else "".
func suggest(word string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if strings.EqualFold(word, c) {
			return c
		}
		d := editDistance(strings.ToLower(word), c)
		if d < bestD && d < len(c) {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance (Levenshtein plus
// adjacent transpositions) over bytes; keys are ASCII.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
