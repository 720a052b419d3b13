package scenarios

import (
	"strings"
)

// maxReason bounds a reason: one line a report can show whole.
const maxReason = 600

// reasonOf is the informative one-line reason of a failure message, for
// reports (Result.Reason, JUnit's failure message, JSON):
//
//   - a testify message (Error Trace, Error, Test, Messages blocks) becomes
//     "MESSAGES: ERROR", the Error block whole (expected and actual of
//     Equal, the error of NoError), its Diff block left to the log;
//   - a diff ("unexpected X (-want +got):" and cmp's lines) becomes its
//     header and the lines that differ: "unexpected X (-want +got): -…; +…",
//     with the lines after the diff;
//   - a message whose first line ends with ':' keeps its next lines;
//   - anything else is its first line.
//
// Whitespace runs become one space; the result is at most maxReason
// bytes.
func reasonOf(msg string) string {
	msg = strings.TrimSpace(msg)
	var out string
	switch {
	case strings.HasPrefix(msg, "Error Trace:"):
		out = testifyReason(msg)
	default:
		lines := strings.Split(msg, "\n")
		head := strings.TrimSpace(lines[0])
		switch {
		case strings.Contains(head, "(-want +got)") || strings.Contains(head, "(-got +want)"):
			out = head + " " + strings.Join(diffLines(lines[1:]), "; ")
		case strings.HasSuffix(head, ":") && len(lines) > 1:
			out = head + " " + strings.Join(nonEmpty(lines[1:]), "; ")
		default:
			out = head
		}
	}
	out = strings.Join(strings.Fields(out), " ")
	if len(out) > maxReason {
		out = out[:maxReason] + "…"
	}
	return out
}

// diffLines keeps the changed lines of a cmp-style diff (those starting
// with '-' or '+') and every line that is not part of the diff's body
// (text after it, such as "error: …").
func diffLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		raw := strings.TrimRight(l, " \t")
		t := strings.TrimSpace(raw)
		switch {
		case t == "":
		case strings.HasPrefix(t, "-") || strings.HasPrefix(t, "+"):
			out = append(out, t)
		case strings.HasPrefix(raw, " ") || strings.HasPrefix(raw, "\t") || t == "}" || strings.HasSuffix(t, "{") || strings.HasPrefix(t, "..."):
			// Context of the diff (indented, or a brace): said by the
			// changed lines.
		default:
			out = append(out, t)
		}
	}
	return out
}

func nonEmpty(lines []string) []string {
	var out []string
	for _, l := range lines {
		if t := strings.TrimSpace(l); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// testifyReason is "MESSAGES: ERROR" of a testify failure, the Error
// block whole (its Diff block, a repeat of expected and actual, left
// out).
func testifyReason(msg string) string {
	blocks := map[string][]string{}
	cur := ""
	for _, l := range strings.Split(msg, "\n") {
		t := strings.TrimSpace(l)
		if name, rest, ok := strings.Cut(t, ":"); ok && isTestifyBlock(name) {
			cur = name
			t = strings.TrimSpace(rest)
		}
		if t != "" && cur != "" {
			blocks[cur] = append(blocks[cur], t)
		}
	}
	errText := strings.Join(blocks["Error"], " ")
	msgText := strings.Join(blocks["Messages"], " ")
	switch {
	case msgText != "" && errText != "":
		return msgText + ": " + errText
	case errText != "":
		return errText
	}
	return strings.SplitN(msg, "\n", 2)[0]
}

func isTestifyBlock(name string) bool {
	switch name {
	case "Error Trace", "Error", "Test", "Messages", "Diff":
		return true
	}
	return false
}

// firstLine is s's first line, trimmed.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
