package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/services/provisioner"
)

// provCall sends one admin request to the provisioner; BAD_REQUEST is a
// usage error (exit status 2).
func provCall(ctx context.Context, nc *nats.Conn, subject string, req, resp any) error {
	ctx = admin.WithActor(ctx, cliActor())
	if err := admin.Call(ctx, nc, subject, req, resp); err != nil {
		if admin.CodeOf(err) == admin.CodeBadRequest {
			return fmt.Errorf("%w: %v", service.ErrUsage, err)
		}
		verb := strings.TrimPrefix(subject, "amt.v1.admin.")
		return fmt.Errorf("%s: %w", verb, err)
	}
	return nil
}

// withNATS runs fn with an admin connection.
func withNATS(cmd *cobra.Command, g *globals, fn func(nc *nats.Conn) error) error {
	nc, err := adminConn(cmd.Context(), g)
	if err != nil {
		return err
	}
	defer nc.Close()
	return fn(nc)
}

// newProfileCmd is `amtprov profile create|list|assign` (INTERFACES.md).
func newProfileCmd(g *globals) *cobra.Command {
	p := &cobra.Command{Use: "profile", Short: "Provisioning profiles: what to configure on a device"}
	p.AddCommand(newProfileCreateCmd(g), newProfileListCmd(g), newProfileAssignCmd(g))
	return p
}

func newProfileCreateCmd(g *globals) *cobra.Command {
	var r provisioner.ProfileCreateRequest
	cmd := &cobra.Command{
		Use:   "create NAME [--default] [--domain-suffix S] [--sol] [--ider] [--kvm] [--user-consent none|kvm|all] [--admin-user U] [--hostname-template T] [--tls-validity-days N]",
		Short: "Create a profile (explicit assignment by UUID wins, then domain suffix, then the default)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			r.Name = args[0]
			return withNATS(cmd, g, func(nc *nats.Conn) error {
				var p provisioner.Profile
				if err := provCall(cmd.Context(), nc, provisioner.SubjectProfileCreate, r, &p); err != nil {
					return err
				}
				if g.json {
					return json.NewEncoder(g.out).Encode(p)
				}
				fmt.Fprintf(g.out, "profile %s created%s\n", p.Name, map[bool]string{true: " (default)"}[p.IsDefault])
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&r.Default, "default", false, "make it the default profile")
	f.StringVar(&r.Settings.DomainSuffix, "domain-suffix", "", "apply to devices whose domain ends in this suffix")
	f.BoolVar(&r.Settings.SOL, "sol", false, "enable serial-over-LAN")
	f.BoolVar(&r.Settings.IDER, "ider", false, "enable IDE redirection")
	f.BoolVar(&r.Settings.KVM, "kvm", false, "enable KVM")
	f.StringVar(&r.Settings.UserConsent, "user-consent", "all", "user consent required for: none, kvm or all")
	f.StringVar(&r.Settings.AdminUser, "admin-user", "admin", "digest user name of the admin account")
	f.StringVar(&r.Settings.HostnameTemplate, "hostname-template", "amt-{uuid8}", "device host name; {uuid} and {uuid8} are replaced")
	f.IntVar(&r.Settings.TLSValidityDays, "tls-validity-days", 365, "validity of the device TLS certificate")
	return cmd
}

func newProfileListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List profiles",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withNATS(cmd, g, func(nc *nats.Conn) error {
				var ps []provisioner.Profile
				if err := provCall(cmd.Context(), nc, provisioner.SubjectProfileList, struct{}{}, &ps); err != nil {
					return err
				}
				if g.json {
					return json.NewEncoder(g.out).Encode(ps)
				}
				w := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "NAME\tDEFAULT\tDOMAIN SUFFIX\tSOL\tIDER\tKVM\tCONSENT\tHOSTNAME")
				for _, p := range ps {
					s := p.Settings.Defaults()
					fmt.Fprintf(w, "%s\t%v\t%s\t%v\t%v\t%v\t%s\t%s\n", p.Name, p.IsDefault, orDash(s.DomainSuffix), s.SOL, s.IDER, s.KVM, s.UserConsent, s.HostnameTemplate)
				}
				return w.Flush()
			})
		},
	}
}

func newProfileAssignCmd(g *globals) *cobra.Command {
	var uuid string
	cmd := &cobra.Command{
		Use:   "assign NAME --uuid U",
		Short: "Assign a profile to one device",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if uuid == "" {
				return fmt.Errorf("%w: --uuid is required", service.ErrUsage)
			}
			return withNATS(cmd, g, func(nc *nats.Conn) error {
				var r provisioner.ProfileAssignRequest
				if err := provCall(cmd.Context(), nc, provisioner.SubjectProfileAssign, provisioner.ProfileAssignRequest{Name: args[0], UUID: uuid}, &r); err != nil {
					return err
				}
				if g.json {
					return json.NewEncoder(g.out).Encode(r)
				}
				fmt.Fprintf(g.out, "profile %s assigned to %s\n", r.Name, r.UUID)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&uuid, "uuid", "", "device UUID")
	return cmd
}
