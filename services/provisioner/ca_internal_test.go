package provisioner

import (
	"fmt"
	"testing"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/services/provisioner/errcode"
)

// The CA's refusal codes reach the error table through caError.
func TestCAErrorsAreClassified(t *testing.T) {
	for code, want := range map[string]errcode.Code{
		"POLICY_FQDN_NOT_ALLOWED": errcode.CAPolicyRejected,
		"KEY_TOO_SMALL":           errcode.CAPolicyRejected,
		admin.CodeUnavailable:     errcode.CAUnavailable,
		admin.CodeTimeout:         errcode.CAUnavailable,
		admin.CodeInternal:        errcode.CAUnavailable,
	} {
		err := fmt.Errorf("sign TLS certificate: %w", caError{&admin.Error{Code: code, Message: "m"}})
		if got := errcode.Classify(err); got != want {
			t.Errorf("CA code %s: %s, want %s", code, got, want)
		}
	}
}
