// Package dockerfile parses Dockerfiles far enough to check them without a
// Docker engine: instructions with their flags and arguments, grouped into
// build stages. It is the deploy module's stand-in for `docker build` in CI
// (no engine runs there); the checks themselves live in the module's tests.
package dockerfile

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxSize bounds the Dockerfile read; real ones are a few KiB.
const MaxSize = 1 << 20

// Instruction is one Dockerfile instruction after line continuations are
// joined. Cmd is upper-case ("COPY"); Flags are the leading --name=value
// options; Args the rest, split on white space, or the elements of a JSON
// array (exec form) when JSON is true.
type Instruction struct {
	Line  int
	Cmd   string
	Flags map[string]string
	Args  []string
	JSON  bool
	Raw   string // the text after the command, continuations joined
}

// Stage is one FROM and the instructions under it.
type Stage struct {
	From  Instruction
	Image string // FROM's image reference
	Name  string // "AS name", or ""
	Body  []Instruction
}

// File is a parsed Dockerfile.
type File struct {
	Directives map[string]string // parser directives, e.g. syntax
	Stages     []Stage
}

// ErrNoFrom is returned when instructions come before the first FROM (ARG
// excepted) or there is no FROM at all.
var ErrNoFrom = errors.New("no FROM")

// Parse reads a Dockerfile.
func Parse(r io.Reader) (*File, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read Dockerfile: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("read Dockerfile: over %d bytes", MaxSize)
	}
	f := &File{Directives: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	var (
		lineNo, start int
		buf           strings.Builder
		directives    = true
	)
	flush := func() error {
		text := strings.TrimSpace(buf.String())
		buf.Reset()
		if text == "" {
			return nil
		}
		ins, err := parseInstruction(start, text)
		if err != nil {
			return err
		}
		return f.add(ins)
	}
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if directives {
			if k, v, ok := directive(trimmed); ok {
				f.Directives[k] = v
				continue
			}
			directives = false
		}
		if strings.HasPrefix(trimmed, "#") {
			continue // comment lines, also inside a continued instruction
		}
		if buf.Len() == 0 {
			if trimmed == "" {
				continue
			}
			start = lineNo
		}
		if strings.HasSuffix(trimmed, `\`) {
			buf.WriteString(strings.TrimSuffix(trimmed, `\`))
			buf.WriteByte(' ')
			continue
		}
		buf.WriteString(trimmed)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read Dockerfile: %w", err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(f.Stages) == 0 {
		return nil, ErrNoFrom
	}
	return f, nil
}

// directive recognises "# key=value" parser directives (only at the top).
func directive(line string) (string, string, bool) {
	if !strings.HasPrefix(line, "#") {
		return "", "", false
	}
	k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "#")), "=")
	k = strings.ToLower(strings.TrimSpace(k))
	if !ok || (k != "syntax" && k != "escape" && k != "check") {
		return "", "", false
	}
	return k, strings.TrimSpace(v), true
}

func parseInstruction(line int, text string) (Instruction, error) {
	cmd, rest, _ := strings.Cut(text, " ")
	ins := Instruction{Line: line, Cmd: strings.ToUpper(cmd), Flags: map[string]string{}, Raw: strings.TrimSpace(rest)}
	rest = strings.TrimSpace(rest)
	for strings.HasPrefix(rest, "--") {
		var flag string
		flag, rest, _ = strings.Cut(rest, " ")
		rest = strings.TrimSpace(rest)
		k, v, _ := strings.Cut(strings.TrimPrefix(flag, "--"), "=")
		ins.Flags[k] = v
	}
	if strings.HasPrefix(rest, "[") {
		var arr []string
		if err := json.Unmarshal([]byte(rest), &arr); err != nil {
			return ins, fmt.Errorf("line %d: %s: exec form is not a JSON string array: %w", line, ins.Cmd, err)
		}
		ins.Args, ins.JSON = arr, true
		return ins, nil
	}
	ins.Args = strings.Fields(rest)
	return ins, nil
}

func (f *File) add(ins Instruction) error {
	if ins.Cmd == "FROM" {
		if len(ins.Args) != 1 && !(len(ins.Args) == 3 && strings.EqualFold(ins.Args[1], "AS")) {
			return fmt.Errorf("line %d: FROM wants IMAGE [AS NAME], got %q", ins.Line, ins.Raw)
		}
		st := Stage{From: ins, Image: ins.Args[0]}
		if len(ins.Args) == 3 {
			st.Name = ins.Args[2]
		}
		f.Stages = append(f.Stages, st)
		return nil
	}
	if len(f.Stages) == 0 {
		if ins.Cmd == "ARG" {
			return nil // global build arguments before the first FROM
		}
		return fmt.Errorf("line %d: %s before the first FROM: %w", ins.Line, ins.Cmd, ErrNoFrom)
	}
	last := &f.Stages[len(f.Stages)-1]
	last.Body = append(last.Body, ins)
	return nil
}

// Final is the last stage: the image that is shipped.
func (f *File) Final() *Stage { return &f.Stages[len(f.Stages)-1] }

// Stage returns the stage called name, or nil.
func (f *File) Stage(name string) *Stage {
	for i := range f.Stages {
		if f.Stages[i].Name == name {
			return &f.Stages[i]
		}
	}
	return nil
}

// All returns the stage's instructions with command cmd.
func (s *Stage) All(cmd string) []Instruction {
	var out []Instruction
	for _, ins := range s.Body {
		if ins.Cmd == cmd {
			out = append(out, ins)
		}
	}
	return out
}

// Env returns the stage's ENV settings (KEY=VALUE pairs; the legacy
// "ENV KEY VALUE" form too).
func (s *Stage) Env() map[string]string {
	env := map[string]string{}
	for _, ins := range s.All("ENV") {
		if len(ins.Args) >= 2 && !strings.Contains(ins.Args[0], "=") {
			env[ins.Args[0]] = strings.Join(ins.Args[1:], " ")
			continue
		}
		for _, kv := range ins.Args {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = strings.Trim(v, `"`)
		}
	}
	return env
}
