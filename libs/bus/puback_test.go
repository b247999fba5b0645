package bus

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestParsePubAck reads the PubAcks nats-server writes and the ones only
// encoding/json can: every case must agree with what jetstream.PublishMsg
// would return.
func TestParsePubAck(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    pubAck
		wantErr error  // errors.Is
		errText string // substring
	}{
		{in: `{"stream":"AMT","seq":1}`, want: pubAck{seq: 1}},
		{in: `{"stream":"AMT","seq":18446744073709551615}`, want: pubAck{seq: 18446744073709551615}},
		{in: `{"stream":"AMT","seq":42,"duplicate": true}`, want: pubAck{seq: 42, duplicate: true}},
		{in: `{"stream":"AMT","seq":42,"duplicate":true}`, want: pubAck{seq: 42, duplicate: true}},
		{in: `{"stream":"AMT","domain":"hub","seq":7}`, want: pubAck{seq: 7}},
		{in: `{"stream":"AMT","seq":7,"duplicate": false}`, want: pubAck{seq: 7}},
		{in: `{"stream":"AMT","seq":7,"batch":"b1","count":3}`, want: pubAck{seq: 7}},
		{in: `{ "stream": "AMT", "seq": 9 }`, want: pubAck{seq: 9}},
		{in: `{"stream":"AMT","seq":99999999999999999999}`, wantErr: jetstream.ErrInvalidJSAck}, // overflows uint64
		{in: `{"stream":"AMT","seq":007}`, wantErr: jetstream.ErrInvalidJSAck},
		{in: `{"stream":"AMT","seq":0}`, want: pubAck{}},
		{in: `{"stream":"AMT","seq":}`, wantErr: jetstream.ErrInvalidJSAck},
		{in: `{"stream":"AMT","seq":1`, wantErr: jetstream.ErrInvalidJSAck},
		{in: `{"seq":1}`, wantErr: jetstream.ErrInvalidJSAck},
		{in: ``, wantErr: jetstream.ErrInvalidJSAck},
		{in: `not json`, wantErr: jetstream.ErrInvalidJSAck},
		{in: `{"error":{"code":503,"err_code":10039,"description":"JetStream not enabled"}}`, errText: "JetStream not enabled"},
		{in: `{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"},"stream":""}`, errText: "expected stream does not match"},
	} {
		got, err := parsePubAck([]byte(tc.in))
		switch {
		case tc.wantErr != nil:
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: err %v, want %v", tc.in, err, tc.wantErr)
			}
		case tc.errText != "":
			var api *jetstream.APIError
			if err == nil || !errors.As(err, &api) || api.Description != tc.errText[:len(api.Description)] {
				t.Errorf("%s: err %v, want an APIError %q", tc.in, err, tc.errText)
			}
		default:
			if err != nil || got != tc.want {
				t.Errorf("%s: %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		}
	}
}

func FuzzParsePubAck(f *testing.F) {
	f.Add([]byte(`{"stream":"AMT","seq":1}`))
	f.Add([]byte(`{"stream":"AMT","seq":42,"duplicate": true}`))
	f.Add([]byte(`{"error":{"code":503,"description":"x"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parsePubAck(data)
		if err != nil {
			return
		}
		// Whatever is accepted must be what encoding/json reads too.
		var r struct {
			Error *jetstream.APIError `json:"error,omitempty"`
			jetstream.PubAck
		}
		if jerr := json.Unmarshal(data, &r); jerr != nil || r.Error != nil || r.Stream == "" || r.Sequence != got.seq || r.Duplicate != got.duplicate {
			t.Fatalf("%q: parsed %+v, encoding/json %+v (err %v)", data, got, r, jerr)
		}
	})
}
