package security

import (
	"regexp"
	"strings"
)

// Kinds of suspicious requests.
const (
	PatternPathTraversal   = "path_traversal"
	PatternScriptInjection = "script_injection"
	PatternSQLInjection    = "sql_injection"
)

// patterns are matched, in order, against the lowercased request target
// after each round of percent-decoding (probes double-encode to slip past
// filters), with SQL comments read as spaces.
var patterns = []struct {
	kind string
	re   *regexp.Regexp
}{
	{PatternPathTraversal, regexp.MustCompile(`(^|[/\\=])\.\.([/\\]|$)|\x00|/etc/(passwd|shadow)|win\.ini|/proc/self/`)},
	{PatternScriptInjection, regexp.MustCompile(`<\s*/?\s*(script|iframe|svg|object|embed)\b|(java|vb)script\s*:|\bon(error|load|mouseover|focus)\s*=|data:text/html`)},
	{PatternSQLInjection, regexp.MustCompile(`'\s*(or|and)\s+'?[\w]+'?\s*(=|like)\s*'?[\w]+|\bunion(\s+all|\s+distinct)?\s+select\b|` +
		`\b(pg_)?sleep\s*\(|\bbenchmark\s*\(|\bwaitfor\s+delay\b|;\s*(drop|truncate|shutdown|delete\s+from|insert\s+into)\b|` +
		`'\s*\)?\s*(--|#)|\binformation_schema\b|\bxp_cmdshell\b|\bor\s+1\s*=\s*1\b`)},
}

// Suspicious reports whether a request target (the path and query as
// sent, e.g. http.Request.RequestURI) looks like a path traversal, script
// injection or SQL injection probe, and which. Bodies are not inspected.
func Suspicious(target string) (kind string, ok bool) {
	s := strings.ToLower(target)
	if !mayMatch(s) {
		return "", false
	}
	return match(s)
}

// match runs the patterns over the lowercased target and up to two rounds
// of its percent-decoding.
func match(s string) (kind string, ok bool) {
	for round := 0; round < 3; round++ {
		norm := strings.ReplaceAll(s, "/**/", " ")
		for _, p := range patterns {
			if p.re.MatchString(norm) {
				return p.kind, true
			}
		}
		next := unescape(s)
		if next == s {
			break
		}
		s = strings.ToLower(next)
	}
	return "", false
}

// mayMatch is the cheap test in front of the patterns, run on every
// request: each pattern needs one of these characters (or an escape that
// could decode into one) or one of these words, and an ordinary API path
// ("/api/v1/bookings/01f3…") has none, so the regular expressions run only
// on requests that could match them.
func mayMatch(lower string) bool {
	return strings.ContainsAny(lower, ".'<;%+(=: \t\x00\\") || strings.Contains(lower, "/etc/") ||
		strings.Contains(lower, "/proc/self/") || strings.Contains(lower, "information_schema") ||
		strings.Contains(lower, "xp_cmdshell")
}

// unescape decodes %XX sequences and '+' leniently: invalid sequences stay
// as they are (url.QueryUnescape would give up on the whole string).
func unescape(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
