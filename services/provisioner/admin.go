package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/services/provisioner/errcode"
	"github.com/amtprov/amtprov/services/provisioner/internal/jobstore"
	"github.com/amtprov/amtprov/services/provisioner/internal/workflow"
)

// Types of the admin verbs' requests and replies (amt.v1.admin.<area>.<verb>);
// the CLI decodes the same types.
type (
	// ProfileSettings is what a profile configures.
	ProfileSettings = jobstore.Settings
	// Profile is a stored profile.
	Profile = jobstore.Profile
	// Job is one provisioning attempt.
	Job = jobstore.Job
	// Step is one step of a job.
	Step = jobstore.Step
)

// ProfileCreateRequest is profile.create.
type ProfileCreateRequest struct {
	Name     string          `json:"name"`
	Settings ProfileSettings `json:"settings"`
	Default  bool            `json:"default"`
}

// ProfileAssignRequest is profile.assign.
type ProfileAssignRequest struct {
	Name string `json:"name"`
	UUID string `json:"uuid"`
}

// JobsListRequest is jobs.list.
type JobsListRequest struct {
	State string `json:"state,omitempty"`
	UUID  string `json:"uuid,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// UUIDRequest names a device (jobs.show, explain, device.credentials).
type UUIDRequest struct {
	UUID string `json:"uuid"`
}

// JobWithSteps is a job and its steps (jobs.show).
type JobWithSteps struct {
	Job   Job    `json:"job"`
	Steps []Step `json:"steps"`
}

// JobsShowReply is jobs.show: the device's attempts, newest first.
type JobsShowReply struct {
	UUID string         `json:"uuid"`
	Jobs []JobWithSteps `json:"jobs"`
}

// Explanation is explain: why a device is or is not provisioned.
type Explanation struct {
	UUID    string `json:"uuid"`
	State   string `json:"state"` // none, queued, running, succeeded, failed
	Attempt int    `json:"attempt,omitempty"`
	Step    string `json:"step,omitempty"`
	Code    string `json:"error_code,omitempty"`
	Summary string `json:"summary"`          // what happened, in plain words
	Detail  string `json:"detail,omitempty"` // the failure as recorded
	Fix     string `json:"fix,omitempty"`    // what to do
}

// Credentials is device.credentials (INTERFACES.md: --json output).
type Credentials struct {
	UUID          string `json:"uuid"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	MEBxPassword  string `json:"mebx_password"`
	TLSCertSHA256 string `json:"tls_cert_sha256"`
	Source        string `json:"source"`
	Version       int    `json:"version"`
	Confirmed     bool   `json:"confirmed"` // active: the device confirmed CommitChanges with these (a recorded commit step)
}

// Admin subjects served by the provisioner.
var (
	SubjectProfileCreate     = admin.Subject(admin.AreaProfile, "create")
	SubjectProfileList       = admin.Subject(admin.AreaProfile, "list")
	SubjectProfileAssign     = admin.Subject(admin.AreaProfile, "assign")
	SubjectJobsList          = admin.Subject(admin.AreaJobs, "list")
	SubjectJobsShow          = admin.Subject(admin.AreaJobs, "show")
	SubjectExplain           = admin.Subject(admin.AreaExplain, "device")
	SubjectDeviceCredentials = admin.Subject(admin.AreaDevice, "credentials")
)

func (s *Service) registerAdmin(srv *admin.Server) {
	admin.Handle(srv, SubjectProfileCreate, s.profileCreate)
	admin.Handle(srv, SubjectProfileList, func(ctx context.Context, _ struct{}) ([]Profile, error) { return s.store.Profiles(ctx) })
	admin.Handle(srv, SubjectProfileAssign, s.profileAssign)
	admin.Handle(srv, SubjectJobsList, s.jobsList)
	admin.Handle(srv, SubjectJobsShow, s.jobsShow)
	admin.Handle(srv, SubjectExplain, s.Explain)
	admin.Handle(srv, SubjectDeviceCredentials, s.deviceCredentials)
}

func storeErr(err error) error {
	switch {
	case errors.Is(err, jobstore.ErrInvalid):
		return &admin.Error{Code: admin.CodeBadRequest, Message: err.Error()}
	case errors.Is(err, jobstore.ErrExists):
		return &admin.Error{Code: admin.CodeConflict, Message: err.Error()}
	case errors.Is(err, jobstore.ErrNotFound):
		return &admin.Error{Code: admin.CodeNotFound, Message: err.Error()}
	}
	return err
}

func canonical(u string) (string, error) {
	id, err := amt.ParseUUID(strings.TrimSpace(u))
	if err != nil {
		return "", admin.Errorf(admin.CodeBadRequest, "uuid %q: %v", u, err)
	}
	return id.String(), nil
}

func (s *Service) profileCreate(ctx context.Context, r ProfileCreateRequest) (Profile, error) {
	p, err := s.store.CreateProfile(ctx, Profile{Name: r.Name, Settings: r.Settings, IsDefault: r.Default})
	if err != nil {
		return Profile{}, storeErr(err)
	}
	if err := admin.Audit(ctx, s.deps.Pool, "profile.create", r.Name, map[string]any{"default": r.Default}); err != nil {
		return Profile{}, err
	}
	return p, nil
}

func (s *Service) profileAssign(ctx context.Context, r ProfileAssignRequest) (ProfileAssignRequest, error) {
	u, err := canonical(r.UUID)
	if err != nil {
		return r, err
	}
	r.UUID = u
	if err := s.store.AssignProfile(ctx, r.Name, u); err != nil {
		return r, storeErr(err)
	}
	if err := admin.Audit(ctx, s.deps.Pool, "profile.assign", u, map[string]any{"profile": r.Name}); err != nil {
		return r, err
	}
	return r, nil
}

func (s *Service) jobsList(ctx context.Context, r JobsListRequest) ([]Job, error) {
	switch r.State {
	case "", jobstore.StateQueued, jobstore.StateRunning, jobstore.StateSucceeded, jobstore.StateFailed:
	default:
		return nil, admin.Errorf(admin.CodeBadRequest, "state %q: want queued, running, succeeded or failed", r.State)
	}
	if r.UUID != "" {
		u, err := canonical(r.UUID)
		if err != nil {
			return nil, err
		}
		r.UUID = u
	}
	return s.store.ListJobs(ctx, jobstore.JobFilter{State: r.State, UUID: r.UUID, Limit: r.Limit})
}

func (s *Service) jobsShow(ctx context.Context, r UUIDRequest) (JobsShowReply, error) {
	u, err := canonical(r.UUID)
	if err != nil {
		return JobsShowReply{}, err
	}
	jobs, err := s.store.ListJobs(ctx, jobstore.JobFilter{UUID: u, Limit: 20})
	if err != nil {
		return JobsShowReply{}, err
	}
	if len(jobs) == 0 {
		return JobsShowReply{}, admin.Errorf(admin.CodeNotFound, "no provisioning job for %s", u)
	}
	out := JobsShowReply{UUID: u}
	for _, j := range jobs {
		steps, err := s.store.Steps(ctx, j.ID)
		if err != nil {
			return JobsShowReply{}, err
		}
		out.Jobs = append(out.Jobs, JobWithSteps{Job: j, Steps: steps})
	}
	return out, nil
}

// Explain says in plain words why the device is or is not provisioned,
// from its newest job and the error table.
func (s *Service) Explain(ctx context.Context, r UUIDRequest) (Explanation, error) {
	u, err := canonical(r.UUID)
	if err != nil {
		return Explanation{}, err
	}
	jobs, err := s.store.ListJobs(ctx, jobstore.JobFilter{UUID: u, Limit: 1})
	if err != nil {
		return Explanation{}, err
	}
	if len(jobs) == 0 {
		return Explanation{UUID: u, State: "none",
			Summary: "amtprov has no provisioning job for this device: no hello from it has reached the provisioner",
			Fix: "check that the device is in setup mode and that its provisioning server address (DHCP option 15 domain / " +
				"provisioning server FQDN) points at the hello listener; amtprov devices show UUID tells whether inventory has heard of it"}, nil
	}
	j := jobs[0]
	e := Explanation{UUID: u, State: j.State, Attempt: j.Attempt, Code: j.ErrorCode, Detail: j.Detail}
	committed := false // CommitChanges went through: the device is provisioned, whatever failed after
	if steps, err := s.store.Steps(ctx, j.ID); err == nil {
		for _, st := range steps {
			if st.Step == workflow.StepCommit && st.Done() {
				committed = true
			}
			if !st.Done() && e.Step == "" {
				e.Step = st.Step
			}
		}
	}
	switch j.State {
	case jobstore.StateSucceeded:
		e.Summary = fmt.Sprintf("provisioned by attempt %d (profile %s, domain %s), finished %s: TLS is on and the admin credentials are stored",
			j.Attempt, j.Profile, j.Domain, fmtTime(j.FinishedAt))
	case jobstore.StateRunning:
		e.Summary = fmt.Sprintf("attempt %d is running (step %s)", j.Attempt, orNone(e.Step))
	case jobstore.StateQueued:
		info := errcode.Lookup(errcode.Code(j.ErrorCode))
		e.Summary = fmt.Sprintf("attempt %d is waiting for a retry after a temporary failure at step %s: %s", j.Attempt, orNone(e.Step), info.Summary)
		e.Fix = info.Hint
	case jobstore.StateFailed:
		info := errcode.Lookup(errcode.Code(j.ErrorCode))
		e.Summary = fmt.Sprintf("attempt %d failed at step %s with %s: %s", j.Attempt, orNone(e.Step), j.ErrorCode, info.Summary)
		e.Fix = info.Hint
		// A device that committed is provisioned and sends no more hellos,
		// so no new attempt would come.
		if s.cfg.RetryFailedAfter > 0 && !committed {
			e.Fix += fmt.Sprintf(" (the device's next hello after %s starts a new attempt)", fmtTime(ptrAdd(j.FinishedAt, s.cfg.RetryFailedAfter)))
		}
	}
	return e, nil
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func ptrAdd(t *time.Time, d time.Duration) *time.Time {
	if t == nil {
		return nil
	}
	v := t.Add(d)
	return &v
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// deviceCredentials decrypts the device's credentials for an operator and
// writes the audit row first (no read without a record).
func (s *Service) deviceCredentials(ctx context.Context, r UUIDRequest) (Credentials, error) {
	u, err := canonical(r.UUID)
	if err != nil {
		return Credentials{}, err
	}
	c, err := s.store.DeviceCredentials(ctx, u)
	if err != nil {
		return Credentials{}, storeErr(err)
	}
	if err := admin.Audit(ctx, s.deps.Pool, "device.credentials.read", u, map[string]any{"version": c.Version, "source": c.Source}); err != nil {
		return Credentials{}, err
	}
	pw, err := s.deps.Keys.OpenCredential(c.PasswordEnc, u, c.Version, "password_enc")
	if err != nil {
		return Credentials{}, fmt.Errorf("open admin password of %s (key %s): %w", u, c.KeyID, err)
	}
	out := Credentials{UUID: u, Username: c.Username, Password: string(pw), TLSCertSHA256: c.TLSCertSHA256,
		Source: c.Source, Version: c.Version, Confirmed: c.Active}
	if len(c.MEBxPasswordEnc) > 0 {
		m, err := s.deps.Keys.OpenCredential(c.MEBxPasswordEnc, u, c.Version, "mebx_password_enc")
		if err != nil {
			return Credentials{}, fmt.Errorf("open MEBx password of %s (key %s): %w", u, c.KeyID, err)
		}
		out.MEBxPassword = string(m)
	}
	return out, nil
}
