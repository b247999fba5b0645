package certauthority

import (
	"context"

	"github.com/go-kit/kit/endpoint"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/events"
)

// Admin verbs of area "domain" (amt.v1.admin.domain.<verb>).
const (
	VerbDomainAdd       = "add"
	VerbDomainCreateDev = "create-dev"
	VerbDomainList      = "list"
)

// CreateDevDomainRequest is domain.create-dev.
type CreateDevDomainRequest struct {
	Suffix string `json:"suffix"`
}

// ListDomainsResponse is domain.list.
type ListDomainsResponse struct {
	Domains []Domain `json:"domains"`
}

// Endpoints are the CA's go-kit endpoints, one per operation.
type Endpoints struct {
	Sign            endpoint.Endpoint
	CreateDevDomain endpoint.Endpoint
	AddDomain       endpoint.Endpoint
	ListDomains     endpoint.Endpoint
}

// MakeEndpoints adapts the service's methods.
func MakeEndpoints(s *Service) Endpoints {
	return Endpoints{
		Sign: func(ctx context.Context, req any) (any, error) {
			return s.Sign(ctx, req.(SignRequest))
		},
		CreateDevDomain: func(ctx context.Context, req any) (any, error) {
			return s.CreateDevDomain(ctx, req.(CreateDevDomainRequest).Suffix)
		},
		AddDomain: func(ctx context.Context, req any) (any, error) {
			return s.AddDomain(ctx, req.(AddDomainRequest))
		},
		ListDomains: func(ctx context.Context, _ any) (any, error) {
			ds, err := s.ListDomains(ctx)
			if err != nil {
				return nil, err
			}
			return ListDomainsResponse{Domains: ds}, nil
		},
	}
}

// RegisterSign serves amt.v1.ca.sign on srv (queue group SignQueue).
func RegisterSign(srv *admin.Server, s *Service) {
	srv.HandleEndpoint(events.SubjectCASign, MakeEndpoints(s).Sign, admin.DecodeJSON[SignRequest])
}

// RegisterAdmin serves the domain verbs on srv (queue group AdminQueue).
func RegisterAdmin(srv *admin.Server, s *Service) {
	e := MakeEndpoints(s)
	srv.HandleEndpoint(admin.Subject(admin.AreaDomain, VerbDomainCreateDev), e.CreateDevDomain, admin.DecodeJSON[CreateDevDomainRequest])
	srv.HandleEndpoint(admin.Subject(admin.AreaDomain, VerbDomainAdd), e.AddDomain, admin.DecodeJSON[AddDomainRequest])
	srv.HandleEndpoint(admin.Subject(admin.AreaDomain, VerbDomainList), e.ListDomains, admin.DecodeJSON[struct{}])
}
