package inventory

import (
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/services/inventory/internal/record"
)

// multiHandler turns one event into updates of many devices. Its updates
// are written in one transaction of their own (not batched with other
// events): the event is applied wholly or not at all.
type multiHandler func(env events.Envelope, p events.Payload) ([]record.Update, error)

// multiHandlers is the table of event types about many devices, keyed by
// ce-type, like handlers().
func multiHandlers() map[string]multiHandler {
	return map[string]multiHandler{
		events.TypeScanCompleted: onScanCompleted,
	}
}

// onScanCompleted: the devices amtprov provisioned that the scan did not
// find at their last known address are stale (kept, flagged); the devices
// identified with another console's credentials are managed by it. Neither
// widens first/last seen: the stale ones were not seen, the others' sightings
// come with their own device.discovered events.
func onScanCompleted(env events.Envelope, p events.Payload) ([]record.Update, error) {
	s, ok := p.(*events.ScanCompleted)
	if !ok {
		return nil, invalid(env, "body is %T", p)
	}
	m, err := mark(env, p)
	if err != nil {
		return nil, err
	}
	out := make([]record.Update, 0, len(s.Stale)+len(s.OtherConsole))
	for _, raw := range s.Stale {
		id, err := canonicalUUID(env, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, record.Update{UUID: id, Stale: &record.Stale{Mark: m, Stale: true}})
	}
	for _, raw := range s.OtherConsole {
		id, err := canonicalUUID(env, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, record.Update{UUID: id, Managed: &record.Managed{Mark: m, By: "other_console"}})
	}
	return out, nil
}
