package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/services/certauthority"
)

// maxPFXFile bounds what `domain add` reads (real PFX files are a few KB).
const maxPFXFile = 64 << 10

// newDomainCmd is `amtprov domain add|create-dev|list` (INTERFACES.md):
// provisioning certificate chains, over the admin API of certauthority.
func newDomainCmd(g *globals) *cobra.Command {
	d := &cobra.Command{Use: "domain", Short: "Provisioning certificates: import a vendor chain, issue a development chain, list them"}
	d.AddCommand(newDomainAddCmd(g), newDomainCreateDevCmd(g), newDomainListCmd(g))
	return d
}

func domainCall(ctx context.Context, nc *nats.Conn, verb string, req, resp any) error {
	ctx = admin.WithActor(ctx, cliActor())
	if err := admin.Call(ctx, nc, admin.Subject(admin.AreaDomain, verb), req, resp); err != nil {
		if admin.CodeOf(err) == admin.CodeBadRequest {
			return fmt.Errorf("%w: %v", service.ErrUsage, err)
		}
		return fmt.Errorf("domain %s: %w", verb, err)
	}
	return nil
}

func newDomainAddCmd(g *globals) *cobra.Command {
	var suffix, pfxPath, passwordEnv, name string
	var replace bool
	cmd := &cobra.Command{
		Use:   "add --suffix S --pfx F [--password-env V]",
		Short: "Import a vendor-issued provisioning certificate (PKCS#12); refused, with the rule, if firmware would refuse it",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if suffix == "" || pfxPath == "" {
				return fmt.Errorf("%w: --suffix and --pfx are required", service.ErrUsage)
			}
			pfx, err := readPFX(pfxPath)
			if err != nil {
				return err
			}
			password := ""
			if passwordEnv != "" {
				v, ok := os.LookupEnv(passwordEnv)
				if !ok {
					return fmt.Errorf("%w: --password-env %s: the variable is not set", service.ErrUsage, passwordEnv)
				}
				password = v
			}
			nc, err := adminConn(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer nc.Close()
			var d certauthority.Domain
			req := certauthority.AddDomainRequest{Suffix: suffix, PFX: pfx, Password: password, Name: name, Replace: replace}
			if err := domainCall(cmd.Context(), nc, certauthority.VerbDomainAdd, req, &d); err != nil {
				return err
			}
			return printDomain(g, d, "imported")
		},
	}
	f := cmd.Flags()
	f.StringVar(&suffix, "suffix", "", "DNS suffix of the devices this chain provisions")
	f.StringVar(&pfxPath, "pfx", "", "PKCS#12 file with the chain (leaf, intermediates, root) and the leaf's key")
	f.StringVar(&passwordEnv, "password-env", "", "name of the environment variable holding the PFX password (never a flag: flags show in ps)")
	f.StringVar(&name, "name", "", "domain name (default: the suffix)")
	f.BoolVar(&replace, "replace", false, "replace an existing domain of that name (certificate renewal)")
	return cmd
}

func readPFX(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: --pfx: %v", service.ErrUsage, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPFXFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxPFXFile {
		return nil, fmt.Errorf("%w: --pfx %s is larger than %d bytes; not a provisioning PFX", service.ErrUsage, path, maxPFXFile)
	}
	return b, nil
}

func newDomainCreateDevCmd(g *globals) *cobra.Command {
	var suffix string
	cmd := &cobra.Command{
		Use:   "create-dev --suffix S",
		Short: "Issue a development provisioning chain for suffix S and print its root SHA-256 (for devices to trust)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if suffix == "" {
				return fmt.Errorf("%w: --suffix is required", service.ErrUsage)
			}
			nc, err := adminConn(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer nc.Close()
			var d certauthority.Domain
			if err := domainCall(cmd.Context(), nc, certauthority.VerbDomainCreateDev, certauthority.CreateDevDomainRequest{Suffix: suffix}, &d); err != nil {
				return err
			}
			verb := "created"
			if !d.Created {
				verb = "exists"
			}
			return printDomain(g, d, verb)
		},
	}
	cmd.Flags().StringVar(&suffix, "suffix", "", "DNS suffix of the devices (e.g. corp.example.com)")
	return cmd
}

// printDomain prints one domain: JSON, or a line and the trust hash.
func printDomain(g *globals, d certauthority.Domain, verb string) error {
	if g.json {
		return json.NewEncoder(g.out).Encode(d)
	}
	fmt.Fprintf(g.out, "domain %s (%s, suffix %s) %s; leaf %s valid until %s\n",
		d.Name, d.Source, d.Suffix, verb, d.LeafSubject, d.NotAfter.UTC().Format(time.DateOnly))
	fmt.Fprintf(g.out, "root sha256:%s\n", d.RootSHA256)
	fmt.Fprintf(g.out, "devices must trust it: amtsim --trust-hash sha256:%s, or add the hash in MEBx\n", d.RootSHA256)
	return nil
}

func newDomainListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List provisioning domains with their root hashes",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, err := adminConn(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer nc.Close()
			var resp certauthority.ListDomainsResponse
			if err := domainCall(cmd.Context(), nc, certauthority.VerbDomainList, nil, &resp); err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.out).Encode(resp)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSUFFIX\tSOURCE\tROOT SHA-256\tNOT AFTER")
			for _, d := range resp.Domains {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Name, d.Suffix, d.Source, d.RootSHA256, d.NotAfter.UTC().Format(time.DateOnly))
			}
			return tw.Flush()
		},
	}
}
