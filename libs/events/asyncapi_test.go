package events_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/amtprov/amtprov/libs/events"
)

const asyncAPIPath = "../../docs/asyncapi.yaml"

// asyncAPIDoc is the part of an AsyncAPI 3.0 document the test reads.
type asyncAPIDoc struct {
	AsyncAPI string `yaml:"asyncapi"`
	Channels map[string]struct {
		Address  *string `yaml:"address"`
		Messages map[string]struct {
			Ref string `yaml:"$ref"`
		} `yaml:"messages"`
	} `yaml:"channels"`
	Operations map[string]struct {
		Action  string `yaml:"action"`
		Channel struct {
			Ref string `yaml:"$ref"`
		} `yaml:"channel"`
	} `yaml:"operations"`
	Components struct {
		Schemas struct {
			CloudEventHeaders struct {
				Required   []string       `yaml:"required"`
				Properties map[string]any `yaml:"properties"`
			} `yaml:"cloudEventHeaders"`
		} `yaml:"schemas"`
		Messages map[string]struct {
			Name    string `yaml:"name"`
			Headers struct {
				AllOf []struct {
					Ref        string `yaml:"$ref"`
					Properties struct {
						CEType struct {
							Const string `yaml:"const"`
						} `yaml:"ce-type"`
					} `yaml:"properties"`
				} `yaml:"allOf"`
			} `yaml:"headers"`
			Payload struct {
				SchemaFormat string `yaml:"schemaFormat"`
				Schema       struct {
					Ref string `yaml:"$ref"`
				} `yaml:"schema"`
			} `yaml:"payload"`
		} `yaml:"messages"`
	} `yaml:"components"`
}

func loadAsyncAPI(t *testing.T) asyncAPIDoc {
	t.Helper()
	raw, err := os.ReadFile(asyncAPIPath)
	if err != nil {
		t.Fatalf("read AsyncAPI document: %v", err)
	}
	var doc asyncAPIDoc
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse %s: %v", asyncAPIPath, err)
	}
	if doc.AsyncAPI != "3.0.0" {
		t.Fatalf("asyncapi = %q, want 3.0.0", doc.AsyncAPI)
	}
	return doc
}

// TestAsyncAPIListsEveryKind: for every event kind there is a channel on its
// subject with a message whose ce-type and payload schema are the kind's,
// and an operation that sends on it.
func TestAsyncAPIListsEveryKind(t *testing.T) {
	doc := loadAsyncAPI(t)
	for _, k := range events.Kinds() {
		t.Run(k.Type, func(t *testing.T) {
			var chanID, msgRef string
			for id, ch := range doc.Channels {
				if ch.Address != nil && strings.HasPrefix(*ch.Address, k.Prefix+".{") && strings.Count(*ch.Address, ".") == strings.Count(k.Prefix, ".")+1 {
					chanID = id
					for _, m := range ch.Messages {
						msgRef = m.Ref
					}
				}
			}
			if chanID == "" {
				t.Fatalf("no channel with address %s.{key}", k.Prefix)
			}
			msgID, ok := strings.CutPrefix(msgRef, "#/components/messages/")
			if !ok {
				t.Fatalf("channel %s: message ref %q is not a component", chanID, msgRef)
			}
			m, ok := doc.Components.Messages[msgID]
			if !ok {
				t.Fatalf("channel %s refers to missing message %s", chanID, msgID)
			}
			if m.Name != k.Type {
				t.Errorf("message %s name = %q, want %q", msgID, m.Name, k.Type)
			}
			var ceType, headerRef string
			for _, part := range m.Headers.AllOf {
				if part.Ref != "" {
					headerRef = part.Ref
				}
				if c := part.Properties.CEType.Const; c != "" {
					ceType = c
				}
			}
			if ceType != k.Type {
				t.Errorf("message %s: ce-type const %q, want %q", msgID, ceType, k.Type)
			}
			if headerRef != "#/components/schemas/cloudEventHeaders" {
				t.Errorf("message %s: headers do not include the CloudEvents headers (ref %q)", msgID, headerRef)
			}
			ref := m.Payload.Schema.Ref
			if filepath.Base(ref) != k.Schema || !strings.Contains(m.Payload.SchemaFormat, "draft-2020-12") {
				t.Errorf("message %s: payload %q (%s), want schema %s", msgID, ref, m.Payload.SchemaFormat, k.Schema)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(asyncAPIPath), ref)); err != nil {
				t.Errorf("message %s: payload schema %s: %v", msgID, ref, err)
			}
			sent := false
			for _, op := range doc.Operations {
				sent = sent || (op.Action == "send" && op.Channel.Ref == "#/channels/"+chanID)
			}
			if !sent {
				t.Errorf("no send operation on channel %s", chanID)
			}
		})
	}
}

// TestAsyncAPIHeadersAndRequestReply: the documented headers are the ones
// Envelope.Headers writes (plus trace context), and the request/reply
// subjects are listed.
func TestAsyncAPIHeadersAndRequestReply(t *testing.T) {
	doc := loadAsyncAPI(t)
	hdr := doc.Components.Schemas.CloudEventHeaders
	for name := range (events.Envelope{}).Headers() {
		if _, ok := hdr.Properties[name]; !ok {
			t.Errorf("header %s written by Envelope.Headers is not documented", name)
		}
		found := false
		for _, r := range hdr.Required {
			found = found || r == name
		}
		if !found {
			t.Errorf("header %s is always written but not required in the document", name)
		}
	}
	for _, name := range []string{"traceparent", "tracestate"} {
		if _, ok := hdr.Properties[name]; !ok {
			t.Errorf("trace header %s not documented", name)
		}
	}
	addrs := map[string]bool{}
	for _, ch := range doc.Channels {
		if ch.Address != nil {
			addrs[*ch.Address] = true
		}
	}
	if !addrs[events.SubjectCASign] {
		t.Errorf("no channel for %s", events.SubjectCASign)
	}
	admin := false
	for a := range addrs {
		admin = admin || strings.HasPrefix(a, events.SubjectAdmin+".")
	}
	if !admin {
		t.Errorf("no channel under %s.>", events.SubjectAdmin)
	}
}
