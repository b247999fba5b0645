package service

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env returns the environment variable key, or def when it is unset or empty.
// Flags take their defaults from it, so that flags win over the environment
// and the environment over built-in defaults (12-factor).
func Env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

// EnvInt is Env for integers; a malformed value is reported by ParseFlags.
func EnvInt(key string, def int) int {
	v, ok := os.LookupEnv(key)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return def
	}
	return n
}

// EnvDuration is Env for durations.
func EnvDuration(key string, def time.Duration) time.Duration {
	v, ok := os.LookupEnv(key)
	if !ok || v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return def
	}
	return d
}

// CheckEnv reports environment variables that are set but do not parse, so
// that a typo is an error at start-up rather than a silently ignored value.
func CheckEnv(ints, durations []string) error {
	var bad []string
	for _, k := range ints {
		if v := os.Getenv(k); v != "" {
			if _, err := strconv.Atoi(v); err != nil {
				bad = append(bad, fmt.Sprintf("%s=%q is not an integer", k, v))
			}
		}
	}
	for _, k := range durations {
		if v := os.Getenv(k); v != "" {
			if _, err := time.ParseDuration(v); err != nil {
				bad = append(bad, fmt.Sprintf("%s=%q is not a duration (e.g. 5s)", k, v))
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("bad environment: %s", strings.Join(bad, "; "))
	}
	return nil
}

// ErrUsage marks a command-line error; mains exit with status 2 for it.
var ErrUsage = fmt.Errorf("usage error")

// ParseFlags parses args into fs with ContinueOnError semantics and turns
// any problem (unknown flag, stray argument) into an ErrUsage.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	return nil
}
