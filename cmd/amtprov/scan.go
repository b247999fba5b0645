package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/services/discovery"
)

// newScanCmd is `amtprov scan add|list|run|status` (INTERFACES.md): network
// discovery over the admin request/reply API of services/discovery.
func newScanCmd(g *globals) *cobra.Command {
	scan := &cobra.Command{Use: "scan", Short: "Network discovery: find AMT devices and identify the managed ones"}
	scan.AddCommand(newScanAddCmd(g), newScanListCmd(g), newScanRunCmd(g), newScanStatusCmd(g))
	return scan
}

func adminConn(ctx context.Context, g *globals) (*nats.Conn, error) {
	if g.nats == "" {
		return nil, fmt.Errorf("%w: --nats (or NATS_URL) is required; `amtprov dev` prints its NATS URL in the ready line", service.ErrUsage)
	}
	return bus.Connect(ctx, bus.Config{URL: g.nats, Name: "amtprov-cli"}, discardLogger())
}

func scanCall(ctx context.Context, nc *nats.Conn, verb string, req, resp any) error {
	ctx = admin.WithActor(ctx, cliActor())
	if err := admin.Call(ctx, nc, admin.Subject(admin.AreaScan, verb), req, resp); err != nil {
		if admin.CodeOf(err) == admin.CodeBadRequest {
			return fmt.Errorf("%w: %v", service.ErrUsage, err)
		}
		return fmt.Errorf("scan %s: %w", verb, err)
	}
	return nil
}

// cliActor names the operator for the audit log: user@host.
func cliActor() string {
	host, _ := os.Hostname()
	user := os.Getenv("USER")
	if user == "" {
		user = "unknown"
	}
	return user + "@" + host
}

func newScanAddCmd(g *globals) *cobra.Command {
	var r discovery.AddTargetRequest
	cmd := &cobra.Command{
		Use:   "add CIDR [--schedule D] [--rate N] [--tcp-all] [--disabled]",
		Short: "Add or update a discovery target (an IPv4 block)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := netip.ParsePrefix(args[0]); err != nil {
				return fmt.Errorf("%w: %q is not a CIDR (e.g. 10.1.0.0/16)", service.ErrUsage, args[0])
			}
			r.CIDR = args[0]
			nc, err := adminConn(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer nc.Close()
			var t discovery.Target
			if err := scanCall(cmd.Context(), nc, discovery.VerbAdd, r, &t); err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.out).Encode(t)
			}
			fmt.Fprintf(g.out, "target %s rate=%d/s schedule=%s enabled=%v\n", t.CIDR, t.RateLimit, orDash(t.Schedule), t.Enabled)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.Schedule, "schedule", "", "scan every D (e.g. 6h, at least 1m); default: only on demand")
	f.IntVar(&r.RateLimit, "rate", 0, "packets per second per discovery replica (default 1000)")
	f.IntVar(&r.RMCPPort, "rmcp-port", 0, "RMCP port (default 623)")
	f.IntVar(&r.HTTPPort, "http-port", 0, "AMT HTTP port (default 16992)")
	f.IntVar(&r.TLSPort, "tls-port", 0, "AMT TLS port (default 16993)")
	f.BoolVar(&r.TCPAll, "tcp-all", false, "also TCP-probe addresses that do not answer RMCP (networks that drop UDP 623)")
	f.BoolVar(&r.Disabled, "disabled", false, "keep the target but do not scan it")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newScanListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Discovery targets and recent scans",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, err := adminConn(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer nc.Close()
			var l discovery.ListResponse
			if err := scanCall(cmd.Context(), nc, discovery.VerbList, struct{}{}, &l); err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.out).Encode(l)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TARGET\tRATE/S\tSCHEDULE\tENABLED\tNEXT RUN")
			for _, t := range l.Targets {
				next := "-"
				if t.NextRunAt != nil {
					next = t.NextRunAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%v\t%s\n", t.CIDR, t.RateLimit, orDash(t.Schedule), t.Enabled, next)
			}
			fmt.Fprintln(tw)
			fmt.Fprintln(tw, "SCAN\tTRIGGER\tSTATE\tPROBED\tFOUND\tIDENTIFIED\tSTARTED")
			for _, s := range l.Scans {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%s\n", s.ID, s.Trigger, s.State, s.AddressesProbed, s.AddressesTotal,
					s.Found, s.Identified, s.CreatedAt.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
}

func newScanStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status SCAN_ID",
		Short: "Progress of one scan",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, err := adminConn(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer nc.Close()
			var s discovery.Scan
			if err := scanCall(cmd.Context(), nc, discovery.VerbStatus, discovery.StatusRequest{ID: args[0]}, &s); err != nil {
				return err
			}
			if g.json {
				return json.NewEncoder(g.out).Encode(s)
			}
			printSummary(g.out, s)
			return nil
		},
	}
}

func newScanRunCmd(g *globals) *cobra.Command {
	var (
		credFile string
		wait     bool
		every    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run [CIDR...] [--credentials FILE] [--wait]",
		Short: "Start a scan of the CIDRs given, or of every enabled target",
		Args:  usageArgs(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				if _, err := netip.ParsePrefix(a); err != nil {
					if _, err := netip.ParseAddr(a); err != nil {
						return fmt.Errorf("%w: %q is not a CIDR (e.g. 10.1.0.0/16)", service.ErrUsage, a)
					}
				}
			}
			req := discovery.RunRequest{CIDRs: args}
			if credFile != "" {
				rows, err := readCredentialsFile(credFile)
				if err != nil {
					return err
				}
				req.Credentials = rows
			}
			if every <= 0 {
				return fmt.Errorf("%w: --interval must be positive", service.ErrUsage)
			}
			ctx := cmd.Context()
			nc, err := adminConn(ctx, g)
			if err != nil {
				return err
			}
			defer nc.Close()
			var s discovery.Scan
			if err := scanCall(ctx, nc, discovery.VerbRun, req, &s); err != nil {
				return err
			}
			if !wait {
				if g.json {
					return json.NewEncoder(g.out).Encode(s)
				}
				fmt.Fprintf(g.out, "scan %s started: %d addresses in %d shards (amtprov scan status %s)\n", s.ID, s.AddressesTotal, s.ShardsTotal, s.ID)
				return nil
			}
			final, err := waitScan(ctx, nc, s, every, g.err)
			if err != nil {
				return err
			}
			if g.json {
				if err := json.NewEncoder(g.out).Encode(final); err != nil {
					return err
				}
			} else {
				printSummary(g.out, final)
			}
			if final.State == "failed" {
				return fmt.Errorf("scan %s failed: %s", final.ID, final.Error)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&credFile, "credentials", "", "CSV file match,username,password (match: a CIDR or a UUID) for devices provisioned by another console")
	cmd.Flags().BoolVar(&wait, "wait", false, "show progress and return when the scan completes")
	cmd.Flags().DurationVar(&every, "interval", time.Second, "progress refresh interval with --wait")
	return cmd
}

// waitScan polls the scan's progress and writes one progress line per
// change to w: addresses probed, devices found, addresses per second.
func waitScan(ctx context.Context, nc *nats.Conn, s discovery.Scan, every time.Duration, w io.Writer) (discovery.Scan, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	start := time.Now()
	var last int64 = -1
	for {
		if s.State != "running" {
			return s, nil
		}
		if s.AddressesProbed != last {
			last = s.AddressesProbed
			secs := time.Since(start).Seconds()
			rate := 0.0
			if secs > 0 {
				rate = float64(s.AddressesProbed) / secs
			}
			fmt.Fprintf(w, "scan %s: probed %d/%d addresses, found %d, identified %d, %.0f addresses/s\n",
				s.ID, s.AddressesProbed, s.AddressesTotal, s.Found, s.Identified, rate)
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("wait for scan %s: %w (the scan goes on; see amtprov scan status %s)", s.ID, ctx.Err(), s.ID)
		case <-t.C:
		}
		var next discovery.Scan
		if err := scanCall(ctx, nc, discovery.VerbStatus, discovery.StatusRequest{ID: s.ID}, &next); err != nil {
			return s, err
		}
		s = next
	}
}

func printSummary(w io.Writer, s discovery.Scan) {
	took := "-"
	if s.FinishedAt != nil {
		took = s.FinishedAt.Sub(s.CreatedAt).Round(time.Millisecond).String()
	}
	fmt.Fprintf(w, "scan %s %s: %d/%d addresses probed in %d/%d shards, %d AMT devices found, %d identified, took %s\n",
		s.ID, s.State, s.AddressesProbed, s.AddressesTotal, s.ShardsDone, s.ShardsTotal, s.Found, s.Identified, took)
	if s.Error != "" {
		fmt.Fprintf(w, "error: %s\n", s.Error)
	}
}

// maxCredentialsFile bounds a credentials file (10,000 rows of short fields).
const maxCredentialsFile = 4 << 20

// readCredentialsFile reads CSV rows match,username,password; a first row
// that is exactly the header is skipped; blank lines and lines starting with
// # are ignored. Errors name the row, never a password.
func readCredentialsFile(path string) ([]discovery.CredentialRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: credentials file: %v", service.ErrUsage, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > maxCredentialsFile {
		return nil, fmt.Errorf("%w: credentials file %s: larger than %d bytes", service.ErrUsage, path, maxCredentialsFile)
	}
	rows, err := parseCredentials(io.LimitReader(f, maxCredentialsFile))
	if err != nil {
		return nil, fmt.Errorf("%w: credentials file %s: %v", service.ErrUsage, path, err)
	}
	return rows, nil
}

var errCredentials = errors.New("bad credentials file")

func parseCredentials(r io.Reader) ([]discovery.CredentialRow, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	cr.ReuseRecord = true
	var out []discovery.CredentialRow
	read := 0
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("%w: line %d: malformed CSV (%v)", errCredentials, pe.Line, pe.Err)
			}
			return nil, fmt.Errorf("%w: %v", errCredentials, err)
		}
		read++
		if len(rec) != 3 {
			return nil, fmt.Errorf("%w: line %d: %d fields, want match,username,password", errCredentials, line, len(rec))
		}
		match, user, pass := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1]), rec[2]
		if read == 1 && strings.EqualFold(match, "match") && strings.EqualFold(user, "username") && strings.EqualFold(strings.TrimSpace(pass), "password") {
			continue
		}
		if match == "" || user == "" || pass == "" {
			return nil, fmt.Errorf("%w: line %d: match, username and password must all be set", errCredentials, line)
		}
		if len(out) == 10000 {
			return nil, fmt.Errorf("%w: more than 10000 rows", errCredentials)
		}
		out = append(out, discovery.CredentialRow{Match: match, Username: user, Password: pass})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no rows", errCredentials)
	}
	return out, nil
}
