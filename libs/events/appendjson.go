package events

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// jsonAppender is implemented by payloads on a hot path that render their
// JSON by hand: encoding/json's reflection was ≈ 6 µs of a hello's
// ≈ 260 µs in the listener's profile (docs/benchmarks.md). The output must
// be byte-for-byte what json.Marshal gives; TestAppendJSONMatchesMarshal
// checks it on random values.
type jsonAppender interface {
	// appendJSON appends the JSON of the value, or reports false when it
	// cannot render it as encoding/json would.
	appendJSON(b []byte) ([]byte, bool)
	// jsonSizeHint is about the JSON's length, so the buffer is allocated once.
	jsonSizeHint() int
}

// marshal renders p's JSON body.
func marshal(p Payload) ([]byte, error) {
	if a, ok := p.(jsonAppender); ok {
		if b, ok := a.appendJSON(make([]byte, 0, a.jsonSizeHint())); ok {
			return b, nil
		}
	}
	return json.Marshal(p)
}

func (h *DeviceHello) jsonSizeHint() int {
	n := 256 + len(h.UUID) + len(h.SourceIP) + len(h.PID) + len(h.Listener)
	for _, rh := range h.RootHashes {
		n += 20 + len(rh.Alg) + len(rh.Hex)
	}
	return n
}

func (h *DeviceHello) appendJSON(b []byte) ([]byte, bool) {
	if y := h.ReceivedAt.Year(); y < 0 || y > 9999 {
		return nil, false // json.Marshal's error is the one to report
	}
	b = append(b, `{"uuid":`...)
	b = appendJSONString(b, h.UUID)
	b = append(b, `,"source_ip":`...)
	b = appendJSONString(b, h.SourceIP)
	b = append(b, `,"source_port":`...)
	b = strconv.AppendInt(b, int64(h.SourcePort), 10)
	b = append(b, `,"interface_version":`...)
	b = strconv.AppendInt(b, int64(h.InterfaceVersion), 10)
	b = append(b, `,"admin_credentials_set":`...)
	b = strconv.AppendBool(b, h.AdminCredentialsSet)
	b = append(b, `,"retry_count":`...)
	b = strconv.AppendUint(b, uint64(h.RetryCount), 10)
	if h.PID != "" {
		b = append(b, `,"pid":`...)
		b = appendJSONString(b, h.PID)
	}
	b = append(b, `,"root_hashes":`...)
	if h.RootHashes == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, rh := range h.RootHashes {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"alg":`...)
			b = appendJSONString(b, rh.Alg)
			b = append(b, `,"hex":`...)
			b = appendJSONString(b, rh.Hex)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"received_at":"`...)
	b = h.ReceivedAt.AppendFormat(b, time.RFC3339Nano) // as time.Time.MarshalJSON
	b = append(b, `","listener":`...)
	b = appendJSONString(b, h.Listener)
	return append(b, '}'), true
}

// jsonPlain marks the bytes encoding/json copies into a string unchanged.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString appends s quoted as encoding/json does. Strings of
// printable ASCII without the characters it escapes (" \ < > &) take the
// fast path; anything else is handed to encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !jsonPlain[s[i]] {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
