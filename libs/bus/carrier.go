package bus

import (
	"strings"

	"github.com/nats-io/nats.go"
)

// headerCarrier adapts NATS headers to the OpenTelemetry propagator.
// NATS headers are case-sensitive; the W3C propagator writes lower-case
// keys, and Get falls back to a case-insensitive match so a traceparent set
// by another client ("Traceparent") is still found.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) { c[key] = []string{value} }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
