package events

import "time"

// Scan events (services/discovery). A scan is one run of network discovery
// over one or more address blocks; scan.completed summarises it.
const (
	TypeScanCompleted    = "io.amtprov.scan.completed.v1"
	SubjectScanCompleted = "amt.v1.scan.completed"
)

// MaxScanListed bounds the UUID lists of a ScanCompleted so the event stays
// well under NATS's payload limit; a longer list is cut and flagged.
const MaxScanListed = 10000

// ScanStates counts devices found per provisioning state.
type ScanStates struct {
	Pre     int `json:"pre"`
	In      int `json:"in"`
	Post    int `json:"post"`
	Unknown int `json:"unknown"`
}

// ScanCompleted summarises a finished discovery scan. Stale lists the
// devices amtprov provisioned whose last known address lies in the
// scanned blocks and that did not answer: inventory marks them stale (it
// does not delete them). OtherConsole lists the devices identified with
// credentials of another console (amtprov scan run --credentials).
type ScanCompleted struct {
	ScanID       string     `json:"scan_id"`
	Targets      []string   `json:"targets"`             // CIDRs scanned
	Trigger      string     `json:"trigger"`             // cli, schedule, provisioned
	StartedAt    time.Time  `json:"started_at"`          // scan created
	FinishedAt   time.Time  `json:"finished_at"`         // last shard done
	Addresses    int        `json:"addresses"`           // addresses probed
	Found        int        `json:"found"`               // AMT devices found
	Identified   int        `json:"identified"`          // of those, identified by UUID over WS-Man
	States       ScanStates `json:"states"`              // found devices per provisioning state
	Stale        []string   `json:"stale"`               // UUIDs, at most MaxScanListed
	OtherConsole []string   `json:"other_console"`       // UUIDs, at most MaxScanListed
	Truncated    bool       `json:"truncated,omitempty"` // a list was cut at MaxScanListed
}

func (*ScanCompleted) EventType() string       { return TypeScanCompleted }
func (s *ScanCompleted) Key() string           { return s.ScanID }
func (s *ScanCompleted) OccurredAt() time.Time { return s.FinishedAt }
