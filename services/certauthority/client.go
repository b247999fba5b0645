package certauthority

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/events"
)

// Client calls the CA over NATS request/reply; the provisioner uses it.
type Client struct {
	nc *nats.Conn
}

// NewClient returns a client on nc.
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc} }

// Sign asks any CA replica for a device certificate. The trace of ctx
// continues in the CA. Refusals and transport failures are *admin.Error
// (admin.CodeOf gives the code: POLICY_FQDN_NOT_ALLOWED, KEY_TOO_SMALL,
// UNAVAILABLE, TIMEOUT, ...).
func (c *Client) Sign(ctx context.Context, req SignRequest) (SignResponse, error) {
	var resp SignResponse
	if err := admin.Call(ctx, c.nc, events.SubjectCASign, req, &resp); err != nil {
		return SignResponse{}, err
	}
	return resp, nil
}
