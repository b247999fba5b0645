package inventory

import (
	"context"
	"fmt"

	"github.com/go-kit/kit/endpoint"

	"github.com/amtprov/amtprov/libs/events"
)

// Endpoints are the inventory's go-kit endpoints, one per operation; the
// JetStream adapter (libs/bus) drives Ingest, the HTTP transport the others.
type Endpoints struct {
	Ingest      endpoint.Endpoint // request events.Envelope, response nil
	GetDevice   endpoint.Endpoint // request getDeviceRequest, response Device
	ListDevices endpoint.Endpoint // request listDevicesRequest, response Page
}

// MakeEndpoints wires the endpoints to s.
func MakeEndpoints(s *Service) Endpoints {
	return Endpoints{
		Ingest:      makeIngestEndpoint(s),
		GetDevice:   makeGetDeviceEndpoint(s),
		ListDevices: makeListDevicesEndpoint(s),
	}
}

func makeIngestEndpoint(s *Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		env, ok := request.(events.Envelope)
		if !ok {
			return nil, fmt.Errorf("%w: ingest request is %T, want events.Envelope", events.ErrInvalid, request)
		}
		return nil, s.Apply(ctx, env)
	}
}

type getDeviceRequest struct{ UUID string }

func makeGetDeviceEndpoint(s *Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		r := request.(getDeviceRequest)
		return s.Device(ctx, r.UUID)
	}
}

type listDevicesRequest struct {
	State, After string
	Limit        int
}

func makeListDevicesEndpoint(s *Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		r := request.(listDevicesRequest)
		return s.Devices(ctx, r.State, r.After, r.Limit)
	}
}
