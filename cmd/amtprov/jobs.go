package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/amtprov/amtprov/services/provisioner"
)

// newJobsCmd is `amtprov jobs list|show` (INTERFACES.md).
func newJobsCmd(g *globals) *cobra.Command {
	j := &cobra.Command{Use: "jobs", Short: "Provisioning attempts with their steps, timings and error codes"}
	j.AddCommand(newJobsListCmd(g), newJobsShowCmd(g))
	return j
}

func newJobsListCmd(g *globals) *cobra.Command {
	var r provisioner.JobsListRequest
	cmd := &cobra.Command{
		Use:   "list [--state queued|running|succeeded|failed] [--limit N]",
		Short: "List provisioning jobs, newest first",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withNATS(cmd, g, func(nc *nats.Conn) error {
				var jobs []provisioner.Job
				if err := provCall(cmd.Context(), nc, provisioner.SubjectJobsList, r, &jobs); err != nil {
					return err
				}
				if g.json {
					return json.NewEncoder(g.out).Encode(jobs)
				}
				w := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "JOB\tUUID\tATTEMPT\tSTATE\tPROFILE\tDOMAIN\tERROR\tUPDATED")
				for _, j := range jobs {
					fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.UUID, j.Attempt, j.State, orDash(j.Profile), orDash(j.Domain),
						orDash(j.ErrorCode), j.UpdatedAt.UTC().Format(time.RFC3339))
				}
				return w.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&r.State, "state", "", "only jobs in this state")
	cmd.Flags().IntVar(&r.Limit, "limit", 100, "at most this many jobs (max 1000)")
	return cmd
}

func newJobsShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show UUID",
		Short: "A device's provisioning attempts with every step",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withNATS(cmd, g, func(nc *nats.Conn) error {
				var r provisioner.JobsShowReply
				if err := provCall(cmd.Context(), nc, provisioner.SubjectJobsShow, provisioner.UUIDRequest{UUID: args[0]}, &r); err != nil {
					return err
				}
				if g.json {
					return json.NewEncoder(g.out).Encode(r)
				}
				for i, js := range r.Jobs {
					if i > 0 {
						fmt.Fprintln(g.out)
					}
					j := js.Job
					fmt.Fprintf(g.out, "job %d  device %s  attempt %d  %s", j.ID, j.UUID, j.Attempt, j.State)
					if j.ErrorCode != "" {
						fmt.Fprintf(g.out, "  %s", j.ErrorCode)
					}
					fmt.Fprintf(g.out, "\n  profile %s  domain %s  from %s  created %s\n", orDash(j.Profile), orDash(j.Domain), orDash(j.SourceIP),
						j.CreatedAt.UTC().Format(time.RFC3339))
					if j.Detail != "" {
						fmt.Fprintf(g.out, "  detail: %s\n", j.Detail)
					}
					if j.Hint != "" {
						fmt.Fprintf(g.out, "  fix: %s\n", j.Hint)
					}
					w := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
					fmt.Fprintln(w, "  STEP\tOUTCOME\tTRIES\tDURATION\tRETURN\tERROR")
					for _, s := range js.Steps {
						dur := "-"
						if s.Finished != nil {
							dur = s.Finished.Sub(s.Started).Round(time.Millisecond).String()
						}
						rv := "-"
						if s.ReturnValue != nil {
							rv = fmt.Sprint(*s.ReturnValue)
						}
						fmt.Fprintf(w, "  %s\t%s\t%d\t%s\t%s\t%s\n", s.Step, s.Outcome, s.AttemptNo, dur, rv, orDash(s.ErrorCode))
					}
					if err := w.Flush(); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
}
