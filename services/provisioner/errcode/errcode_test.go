package errcode_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"regexp"
	"syscall"
	"testing"

	"github.com/amtprov/amtprov/libs/wsman"
	"github.com/amtprov/amtprov/services/provisioner/errcode"
)

type caErr string

func (c caErr) Error() string  { return "ca: " + string(c) }
func (c caErr) CACode() string { return string(c) }

func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("step x on 127.0.0.1:16993: %w", err) }
	tests := []struct {
		name string
		err  error
		want errcode.Code
	}{
		{"nil", nil, ""},
		{"own code wins", wrap(errcode.Wrap(errcode.DeviceRebooted, wsman.ErrConnectionLost, "commit")), errcode.DeviceRebooted},
		{"invalid password", wrap(&wsman.ReturnError{Method: "A.B", ReturnValue: 2054}), errcode.AMTInvalidPassword},
		{"not permitted", wrap(&wsman.ReturnError{ReturnValue: 16}), errcode.AMTNotPermitted},
		{"data missing", wrap(&wsman.ReturnError{ReturnValue: 2057}), errcode.AMTDataMissing},
		{"flash", wrap(&wsman.ReturnError{ReturnValue: 38}), errcode.AMTFlashWriteLimit},
		{"invalid state", wrap(&wsman.ReturnError{ReturnValue: 32}), errcode.AMTInvalidState},
		{"internal rv is busy", wrap(&wsman.ReturnError{ReturnValue: 1}), errcode.DeviceBusy},
		{"other rv", wrap(&wsman.ReturnError{ReturnValue: 2063}), errcode.AMTError},
		{"tls refused", wrap(&wsman.TLSError{Address: "a", Err: errors.New("remote error: bad certificate")}), errcode.CertRejectedByDevice},
		{"tls cut off", wrap(&wsman.TLSError{Address: "a", Err: fmt.Errorf("read: %w", syscall.ECONNRESET)}), errcode.DeviceUnreachable},
		{"tls alert", wrap(&wsman.TLSError{Address: "a", Err: tls.AlertError(42)}), errcode.CertRejectedByDevice},
		{"pin", wrap(&wsman.TLSError{Address: "a", Err: fmt.Errorf("x: %w", wsman.ErrPinMismatch)}), errcode.TLSPinMismatch},
		{"fault", wrap(&wsman.Fault{Code: "a:Sender"}), errcode.WSManFault},
		{"503", wrap(&wsman.HTTPError{Status: 503}), errcode.DeviceBusy},
		{"400", wrap(&wsman.HTTPError{Status: 400}), errcode.WSManFault},
		{"unauthorized", wrap(wsman.ErrUnauthorized), errcode.AMTUnauthorized},
		{"unreachable", wrap(wsman.ErrUnreachable), errcode.DeviceUnreachable},
		{"deadline", wrap(context.DeadlineExceeded), errcode.DeviceUnreachable},
		{"lost", wrap(wsman.ErrConnectionLost), errcode.DeviceBusy},
		{"malformed", wrap(wsman.ErrMalformedResponse), errcode.DeviceResponseInvalid},
		{"ca policy", wrap(caErr("POLICY_FQDN_NOT_ALLOWED")), errcode.CAPolicyRejected},
		{"ca down", wrap(caErr("UNAVAILABLE")), errcode.CAUnavailable},
		{"anything else", errors.New("boom"), errcode.Internal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := errcode.Classify(tc.err); got != tc.want {
				t.Fatalf("Classify(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

func TestTableIsComplete(t *testing.T) {
	pattern := regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`) // the event schema's pattern
	seen := map[errcode.Code]bool{}
	for _, i := range errcode.All() {
		if seen[i.Code] {
			t.Errorf("%s twice", i.Code)
		}
		seen[i.Code] = true
		if !pattern.MatchString(string(i.Code)) {
			t.Errorf("%s does not match the schema pattern", i.Code)
		}
		if i.Summary == "" || i.Hint == "" {
			t.Errorf("%s lacks a summary or hint", i.Code)
		}
	}
	for _, c := range []errcode.Code{errcode.NoMatchingProvisioningCert, errcode.DomainSuffixMismatch, errcode.CertRejectedByDevice,
		errcode.DeviceUnreachable, errcode.AMTInvalidPassword, errcode.AMTNotPermitted, errcode.PSKNotSupported,
		errcode.AMTDataMissing, errcode.AMTFlashWriteLimit, errcode.CAPolicyRejected, errcode.Internal} {
		if !seen[c] {
			t.Errorf("contract code %s missing", c)
		}
	}
	if got := errcode.Lookup("NOT_A_CODE"); got.Code != "NOT_A_CODE" || !got.Retryable {
		t.Errorf("unknown code: %+v", got)
	}
	if errcode.Lookup(errcode.PSKNotSupported).Retryable || !errcode.Lookup(errcode.DeviceUnreachable).Retryable {
		t.Error("retryable flags wrong")
	}
}
