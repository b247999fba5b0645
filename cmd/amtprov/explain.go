package main

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/amtprov/amtprov/services/provisioner"
)

// newExplainCmd is `amtprov explain UUID`: why a device is or is not
// provisioned, in plain words, with the fix (INTERFACES.md).
func newExplainCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "explain UUID",
		Short: "Why a device is or is not provisioned, in plain words, with the fix",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withNATS(cmd, g, func(nc *nats.Conn) error {
				var e provisioner.Explanation
				if err := provCall(cmd.Context(), nc, provisioner.SubjectExplain, provisioner.UUIDRequest{UUID: args[0]}, &e); err != nil {
					return err
				}
				if g.json {
					return json.NewEncoder(g.out).Encode(e)
				}
				fmt.Fprintf(g.out, "%s: %s\n", e.UUID, e.Summary)
				if e.Detail != "" {
					fmt.Fprintf(g.out, "what happened: %s\n", e.Detail)
				}
				if e.Fix != "" {
					fmt.Fprintf(g.out, "fix: %s\n", e.Fix)
				}
				return nil
			})
		},
	}
}
