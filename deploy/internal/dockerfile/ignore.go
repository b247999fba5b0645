package dockerfile

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
)

// Ignore is a parsed .dockerignore: patterns in order, later ones winning,
// "!" re-including, "**" matching any number of directories, a pattern
// matching a directory excluding everything under it (Docker's rules).
type Ignore struct {
	rules []ignoreRule
}

type ignoreRule struct {
	re      *regexp.Regexp
	include bool // "!" pattern
	text    string
}

// ParseIgnore reads a .dockerignore.
func ParseIgnore(r io.Reader) (*Ignore, error) {
	ig := &Ignore{}
	sc := bufio.NewScanner(io.LimitReader(r, MaxSize))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		include := strings.HasPrefix(line, "!")
		pat := strings.TrimPrefix(line, "!")
		pat = strings.TrimPrefix(path.Clean("/"+strings.TrimSpace(pat)), "/")
		re, err := ignoreRegexp(pat)
		if err != nil {
			return nil, fmt.Errorf("line %d: %q: %w", n, line, err)
		}
		ig.rules = append(ig.rules, ignoreRule{re: re, include: include, text: line})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	return ig, nil
}

// ignoreRegexp translates a pattern (filepath.Match syntax plus "**") into a
// regexp that matches the path itself or anything under it.
func ignoreRegexp(pat string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		switch {
		case c == '*' && i+1 < len(pat) && pat[i+1] == '*':
			i++
			if i+1 < len(pat) && pat[i+1] == '/' {
				i++
				b.WriteString("(.*/)?")
			} else {
				b.WriteString(".*")
			}
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[':
			j := strings.IndexByte(pat[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated [")
			}
			b.WriteString(pat[i : i+j+1])
			i += j
		case c == '\\' && i+1 < len(pat):
			i++
			b.WriteString(regexp.QuoteMeta(string(pat[i])))
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("(/.*)?$")
	return regexp.Compile(b.String())
}

// Excludes reports whether the context path p (slash-separated, relative to
// the context root) is left out of the build context.
func (ig *Ignore) Excludes(p string) bool {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	excluded := false
	for _, r := range ig.rules {
		if r.re.MatchString(p) {
			excluded = !r.include
		}
	}
	return excluded
}
