package spice

import (
	"fmt"
	"strings"
)

// Caps is a capability bit set as carried on the wire: bit n is bit n%32
// of word n/32; missing words mean absent.
type Caps []uint32

// CapsOf builds a Caps with the given bits set.
func CapsOf(bits ...int) Caps {
	var c Caps
	for _, b := range bits {
		c = c.With(b)
	}
	return c
}

// Has reports whether bit is set.
func (c Caps) Has(bit int) bool {
	w := bit / 32
	return bit >= 0 && w < len(c) && c[w]&(1<<(bit%32)) != 0
}

// With returns c with bit set (c is not modified).
func (c Caps) With(bit int) Caps {
	w := bit / 32
	out := make(Caps, max(len(c), w+1))
	copy(out, c)
	out[w] |= 1 << (bit % 32)
	return out
}

// Without returns c with bit cleared (c is not modified).
func (c Caps) Without(bit int) Caps {
	out := append(Caps(nil), c...)
	if w := bit / 32; w < len(out) {
		out[w] &^= 1 << (bit % 32)
	}
	return out
}

// And returns the intersection, as long as the shorter operand.
func (c Caps) And(o Caps) Caps {
	out := make(Caps, min(len(c), len(o)))
	for i := range out {
		out[i] = c[i] & o[i]
	}
	return out
}

// Equal compares bit sets (trailing zero words do not matter).
func (c Caps) Equal(o Caps) bool {
	for i := 0; i < max(len(c), len(o)); i++ {
		var a, b uint32
		if i < len(c) {
			a = c[i]
		}
		if i < len(o) {
			b = o[i]
		}
		if a != b {
			return false
		}
	}
	return true
}

func (c Caps) String() string {
	if len(c) == 0 {
		return "[]"
	}
	parts := make([]string, len(c))
	for i, w := range c {
		parts[i] = fmt.Sprintf("%#x", w)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
