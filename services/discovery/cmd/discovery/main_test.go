package main

import (
	"context"
	"errors"
	"testing"

	"github.com/amtprov/amtprov/libs/service"
)

// TestUsageErrors: configuration mistakes are usage errors (exit 2) and
// are found before anything connects.
func TestUsageErrors(t *testing.T) {
	t.Setenv("AMTPROV_SECRET_KEYS", "")
	t.Setenv("AMTPROV_SECRET_KEYS_FILE", "")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"no database", map[string]string{"DATABASE_URL": ""}, nil},
		{"bad flag", nil, []string{"--no-such-flag"}},
		{"bad log level", map[string]string{"DATABASE_URL": "postgres://x"}, []string{"--log-level", "loud"}},
		{"bad env int", map[string]string{"DATABASE_URL": "postgres://x", "DISCOVERY_SHARD_WORKERS": "many"}, nil},
		{"no keyring", map[string]string{"DATABASE_URL": "postgres://x"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if err := run(context.Background(), tc.args); !errors.Is(err, service.ErrUsage) {
				t.Fatalf("err = %v, want a usage error", err)
			}
		})
	}
}
