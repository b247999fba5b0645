// Package errcode is the one table of provisioning error codes: stable
// strings that events, jobs, the CLI and operators' scripts use, each with a
// remediation hint, and the one function (Classify) that maps what the
// WS-Man client, the certificate authority and the workflow return to a code.
//
// A code is Retryable when the same attempt may succeed later without anyone
// changing anything (a device that was unreachable, a busy CA); the
// provisioner then redelivers the hello with a delay. Any other code ends the
// job as failed, and the hint says what an operator must change.
package errcode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/amtprov/amtprov/libs/wsman"
)

// Code is a stable error code (INTERFACES.md: e.g. NO_MATCHING_PROVISIONING_CERT).
type Code string

// The codes. Never rename one: scripts and dashboards match on them.
const (
	NoMatchingProvisioningCert Code = "NO_MATCHING_PROVISIONING_CERT"
	DomainSuffixMismatch       Code = "DOMAIN_SUFFIX_MISMATCH"
	CertRejectedByDevice       Code = "CERT_REJECTED_BY_DEVICE"
	DeviceUnreachable          Code = "DEVICE_UNREACHABLE"
	AMTInvalidPassword         Code = "AMT_INVALID_PASSWORD"
	AMTNotPermitted            Code = "AMT_NOT_PERMITTED"
	AMTInvalidState            Code = "AMT_INVALID_PROVISIONING_STATE"
	PSKNotSupported            Code = "PSK_NOT_SUPPORTED"
	AMTDataMissing             Code = "AMT_DATA_MISSING"
	AMTFlashWriteLimit         Code = "AMT_FLASH_WRITE_LIMIT"
	AMTUnauthorized            Code = "AMT_UNAUTHORIZED"
	AMTError                   Code = "AMT_ERROR"
	WSManFault                 Code = "WSMAN_FAULT"
	DeviceBusy                 Code = "DEVICE_BUSY"
	DeviceRebooted             Code = "DEVICE_REBOOTED"
	DeviceResponseInvalid      Code = "DEVICE_RESPONSE_INVALID"
	TLSPinMismatch             Code = "TLS_PIN_MISMATCH"
	VerifyFailed               Code = "VERIFY_FAILED"
	ProvisionedUnverified      Code = "PROVISIONED_UNVERIFIED"
	CAPolicyRejected           Code = "CA_POLICY_REJECTED"
	CAUnavailable              Code = "CA_UNAVAILABLE"
	NoProfile                  Code = "NO_PROFILE"
	SecretsUnavailable         Code = "SECRETS_UNAVAILABLE"
	Internal                   Code = "INTERNAL"
)

// Info is one row of the table.
type Info struct {
	Code      Code
	Retryable bool   // the same attempt may succeed later unchanged
	Summary   string // what happened, in plain words
	Hint      string // what to do about it
}

// table is the one table of codes (STYLE.md: one place).
var table = []Info{
	{NoMatchingProvisioningCert, false,
		"none of the device's trusted root certificate hashes belongs to a provisioning domain",
		"add a provisioning certificate whose root the device trusts (amtprov domain add --pfx, or amtprov domain create-dev and add its root hash to the device in MEBx), then reset the device to setup mode"},
	{DomainSuffixMismatch, false,
		"the device refused every provisioning certificate it trusts: its DNS suffix does not end in the certificate's domain",
		"set the device's DNS suffix (DHCP option 15, or the PKI DNS suffix in MEBx) to the provisioning domain, or add a provisioning domain for the device's suffix (amtprov domain add/create-dev --suffix)"},
	{CertRejectedByDevice, false,
		"the device refused the provisioning certificate chain in the TLS handshake",
		"check the chain with amtprov domain list: the leaf needs the Intel OID or OU \"Intel(R) Client Setup Certificate\", serverAuth, a valid date, and the full chain up to the trusted root"},
	{DeviceUnreachable, true,
		"the device did not answer on its TLS port (16993)",
		"check that the device is powered and on the network, and that port 16993 is open from the provisioner to the device; amtprov retries on the next hello"},
	{AMTInvalidPassword, false,
		"the firmware refused a password (AMT ReturnValue 2054 INVALID_PASSWORD)",
		"the generated password did not meet this firmware's policy; report the firmware version (amtprov jobs show) so the password policy can be adjusted"},
	{AMTNotPermitted, false,
		"the firmware refused the operation as not permitted (ReturnValue 16 NOT_PERMITTED)",
		"the device is not in setup mode (or the operation needs admin control mode); reset it to setup mode (MEBx or unprovision) and let it send a hello again"},
	{AMTInvalidState, false,
		"the firmware is in the wrong provisioning state for this step (ReturnValue 32 INVALID_PROVISIONING_STATE)",
		"reset the device to setup mode (MEBx or unprovision) and let it send a hello again"},
	{PSKNotSupported, false,
		"the device sent a version 2 (PSK, PID/PPS) hello; amtprov provisions with TLS-PKI remote configuration only",
		"update the firmware to AMT 11 or later (PKI hellos), or provision this device with a PSK-capable console"},
	{AMTDataMissing, false,
		"the firmware refused to commit: required settings were missing (ReturnValue 2057 DATA_MISSING)",
		"a step before CommitChanges did not take effect; run amtprov jobs show UUID to see which, then reset the device to setup mode"},
	{AMTFlashWriteLimit, false,
		"the firmware's flash write limit is exhausted (ReturnValue 38 FLASH_WRITE_LIMIT_EXCEEDED)",
		"power-cycle the device (the limit resets at boot) and let it send a hello again"},
	{AMTUnauthorized, false,
		"the device refused the admin credentials amtprov stored for it",
		"the device was changed by someone else after provisioning; check amtprov device credentials UUID, or unprovision and provision again"},
	{AMTError, false,
		"the firmware answered a call with an error ReturnValue",
		"see the step and return value in amtprov jobs show UUID (PROTOCOL.md §2.4 lists the values); reset the device to setup mode to try again"},
	{WSManFault, false,
		"the firmware answered with a SOAP fault",
		"see the failed step in amtprov jobs show UUID; the firmware may not support this setting (profile) - adjust the profile and reset the device"},
	{DeviceBusy, true,
		"the device answered with a server error (HTTP 5xx) or dropped the connection",
		"nothing to do: amtprov retries with backoff"},
	{DeviceRebooted, true,
		"the device restarted before CommitChanges and lost the settings staged so far",
		"nothing to do: amtprov starts the configuration again on the device's next hello"},
	{DeviceResponseInvalid, false,
		"the device's answer could not be read as WS-Management",
		"check the firmware version (amtprov jobs show UUID); the device may need a firmware update"},
	{TLSPinMismatch, false,
		"after CommitChanges the device presented a TLS certificate other than the one amtprov installed",
		"something else configured TLS on the device; unprovision it and provision again"},
	{VerifyFailed, false,
		"after CommitChanges the device did not report post-provisioning with TLS on",
		"see the verify step in amtprov jobs show UUID; reset the device to setup mode to try again"},
	{ProvisionedUnverified, true,
		"CommitChanges went through: the device is provisioned with the admin credentials amtprov stored for this job (active now), but the device could not be reached to verify it afterwards",
		"do not reset the device blindly: amtprov device credentials UUID gives the admin password it holds now; check that the device is on the network with port 16993 open and log in with those credentials (its TLS certificate is the pinned tls_cert_sha256); amtprov retries the verification while the job has tries left"},
	{CAPolicyRejected, false,
		"the certificate authority refused to sign the device's TLS certificate",
		"the device's FQDN is outside the allowed domains or its key is too small; fix the profile's host name/domain or the CA policy"},
	{CAUnavailable, true,
		"the certificate authority did not answer",
		"check that the certauthority service is running; amtprov retries"},
	{NoProfile, false,
		"no profile applies to the device: none assigned, none for its domain, and no default",
		"create a default profile (amtprov profile create NAME --default) or assign one (amtprov profile assign NAME --uuid UUID)"},
	{SecretsUnavailable, true,
		"the provisioner could not store the device's credentials encrypted",
		"check the database and the secret keyring configuration (AMTPROV_SECRET_KEYS / AMTPROV_SECRET_KEYS_FILE)"},
	{Internal, true,
		"an internal error in amtprov",
		"see the provisioner's log for the job; amtprov retries"},
}

// Lookup returns the row of code; an unknown code reads as Internal.
func Lookup(code Code) Info {
	for _, i := range table {
		if i.Code == code {
			return i
		}
	}
	i := lookupKnown(Internal)
	i.Code = code
	return i
}

func lookupKnown(code Code) Info {
	for _, i := range table {
		if i.Code == code {
			return i
		}
	}
	panic("errcode: missing row " + string(code))
}

// All lists every code, in table order.
func All() []Info { return append([]Info(nil), table...) }

// Error is an error with a code attached by the code that knows it best
// (the workflow for NO_MATCHING_PROVISIONING_CERT, a step for
// DEVICE_REBOOTED). Detail is safe to show an operator (no secrets).
type Error struct {
	Code   Code
	Detail string
	Err    error
}

func (e *Error) Error() string {
	s := string(e.Code)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// New makes an *Error.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Wrap attaches code to err.
func Wrap(code Code, err error, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...), Err: err}
}

// ReturnValueOf reports the AMT ReturnValue inside err, if there is one.
func ReturnValueOf(err error) (int, bool) {
	var re *wsman.ReturnError
	if errors.As(err, &re) {
		return re.ReturnValue, true
	}
	return 0, false
}

// CAError is implemented by the certificate authority client's errors: a
// CA error code (POLICY_FQDN_NOT_ALLOWED, KEY_TOO_SMALL, ...). Every CA code
// is a policy refusal except UNAVAILABLE, INTERNAL and TIMEOUT.
type CAError interface {
	error
	CACode() string
}

// AMT ReturnValues with their own code (PROTOCOL.md §2.4).
const (
	rvNotPermitted      = 16
	rvInvalidState      = 32
	rvFlashWriteLimit   = 38
	rvInvalidPassword   = 2054
	rvDataMissing       = 2057
	rvInternalError     = 1
	rvOperationProgress = 2082
)

// handshakeCutOff reports a TLS handshake that ended by the connection
// breaking rather than by a TLS alert.
func handshakeCutOff(err error) bool {
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return false
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Classify maps any error the workflow sees to its code: an *Error keeps its
// own; wsman errors by type; context ends are DEVICE_UNREACHABLE (the device
// did not answer in time). It is the only place that does this mapping.
func Classify(err error) Code {
	if err == nil {
		return ""
	}
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	var re *wsman.ReturnError
	if errors.As(err, &re) {
		switch re.ReturnValue {
		case rvNotPermitted:
			return AMTNotPermitted
		case rvInvalidState:
			return AMTInvalidState
		case rvFlashWriteLimit:
			return AMTFlashWriteLimit
		case rvInvalidPassword:
			return AMTInvalidPassword
		case rvDataMissing:
			return AMTDataMissing
		case rvInternalError, rvOperationProgress:
			return DeviceBusy
		}
		return AMTError
	}
	var tlsErr *wsman.TLSError
	if errors.As(err, &tlsErr) {
		switch {
		case errors.Is(err, wsman.ErrPinMismatch):
			return TLSPinMismatch
		case handshakeCutOff(err):
			// A reset or EOF with no TLS alert: the device (or the path
			// to it) dropped the connection; a refusal sends an alert.
			return DeviceUnreachable
		}
		return CertRejectedByDevice
	}
	var caErr CAError
	if errors.As(err, &caErr) {
		switch caErr.CACode() {
		case "UNAVAILABLE", "INTERNAL", "TIMEOUT":
			return CAUnavailable
		}
		return CAPolicyRejected
	}
	var fault *wsman.Fault
	if errors.As(err, &fault) {
		return WSManFault
	}
	var he *wsman.HTTPError
	if errors.As(err, &he) {
		if he.Retryable() {
			return DeviceBusy
		}
		return WSManFault
	}
	switch {
	case errors.Is(err, wsman.ErrUnauthorized):
		return AMTUnauthorized
	case errors.Is(err, wsman.ErrUnreachable), errors.Is(err, context.DeadlineExceeded):
		return DeviceUnreachable
	case errors.Is(err, wsman.ErrConnectionLost):
		return DeviceBusy
	case errors.Is(err, wsman.ErrMalformedResponse), errors.Is(err, wsman.ErrResponseTooLarge):
		return DeviceResponseInvalid
	}
	return Internal
}
