package admin

import (
	"github.com/amtprov/amtprov/libs/events"
)

// Areas of the admin API: the token after amt.v1.admin.
const (
	AreaDomain  = "domain"
	AreaProfile = "profile"
	AreaJobs    = "jobs"
	AreaExplain = "explain"
	AreaDevice  = "device"
	AreaScan    = "scan"
)

// Subject returns the subject of one verb: amt.v1.admin.<area>.<verb>,
// e.g. Subject(AreaDomain, "create-dev").
func Subject(area, verb string) string {
	return events.SubjectAdmin + "." + area + "." + verb
}

// QueueGroup is the queue group a service's admin server joins:
// "admin-<service>".
func QueueGroup(service string) string { return "admin-" + service }

// Header names set by Call and read by the server.
const (
	// HeaderActor names who asks (user@host for the CLI), for audit_log.
	HeaderActor = "Amtprov-Actor"
)
