package main

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/amtprov/amtprov/services/provisioner"
)

// newDeviceCmd is `amtprov device credentials UUID` (INTERFACES.md): the
// device's admin credentials, decrypted by the provisioner, which records
// the read in audit_log before answering.
func newDeviceCmd(g *globals) *cobra.Command {
	d := &cobra.Command{Use: "device", Short: "One device's secrets (audited)"}
	d.AddCommand(&cobra.Command{
		Use:   "credentials UUID",
		Short: "The device's admin credentials (the read is written to the audit log)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withNATS(cmd, g, func(nc *nats.Conn) error {
				var c provisioner.Credentials
				if err := provCall(cmd.Context(), nc, provisioner.SubjectDeviceCredentials, provisioner.UUIDRequest{UUID: args[0]}, &c); err != nil {
					return err
				}
				if g.json {
					return json.NewEncoder(g.out).Encode(struct {
						UUID          string `json:"uuid"`
						Username      string `json:"username"`
						Password      string `json:"password"`
						MEBxPassword  string `json:"mebx_password"`
						TLSCertSHA256 string `json:"tls_cert_sha256"`
					}{c.UUID, c.Username, c.Password, c.MEBxPassword, c.TLSCertSHA256})
				}
				fmt.Fprintf(g.out, "uuid:            %s\nusername:        %s\npassword:        %s\nmebx password:   %s\ntls cert sha256: %s\n",
					c.UUID, c.Username, c.Password, orDash(c.MEBxPassword), orDash(c.TLSCertSHA256))
				if !c.Confirmed {
					fmt.Fprintln(g.err, "note: no provisioning job has confirmed these credentials on the device yet")
				}
				return nil
			})
		},
	})
	return d
}
