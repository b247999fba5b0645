package main

import (
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/service"
)

func newHelloCmd(g *globals) *cobra.Command {
	hello := &cobra.Command{Use: "hello", Short: "Setup-mode hello packets"}
	var (
		to, uuid, pid, from string
		hashes              []string
		retry               uint32
		adminSet            bool
	)
	send := &cobra.Command{
		Use:   "send --to ADDR --uuid U [--pki-hash ALG:HEX ...] [--pid PID] [--retry N] [--from IP]",
		Short: "Send one hello as AMT firmware would (v3 with hashes, or v2 with a PID)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			h := amt.Hello{AdminCredentialsSet: adminSet, RetryCount: retry}
			u, err := amt.ParseUUID(uuid)
			if err != nil {
				return fmt.Errorf("%w: --uuid: %v", service.ErrUsage, err)
			}
			h.UUID = u
			switch {
			case pid != "" && len(hashes) > 0:
				return fmt.Errorf("%w: --pid (v2 hello) and --pki-hash (v3 hello) exclude each other", service.ErrUsage)
			case pid != "":
				h.InterfaceVersion = amt.InterfacePSK
				h.PID = pid
				if err := amt.ValidatePID(pid); err != nil {
					return fmt.Errorf("%w: --pid: %v", service.ErrUsage, err)
				}
			default:
				h.InterfaceVersion = amt.InterfacePKI
				for _, s := range hashes {
					rh, err := amt.ParseRootHash(s)
					if err != nil {
						return fmt.Errorf("%w: --pki-hash: %v", service.ErrUsage, err)
					}
					h.RootHashes = append(h.RootHashes, rh)
				}
			}
			pkt, err := h.MarshalBinary()
			if err != nil {
				return err
			}
			d := net.Dialer{Timeout: 10 * time.Second}
			if from != "" {
				ip := net.ParseIP(from)
				if ip == nil {
					return fmt.Errorf("%w: --from %q is not an IP address", service.ErrUsage, from)
				}
				d.LocalAddr = &net.TCPAddr{IP: ip}
			}
			conn, err := d.DialContext(cmd.Context(), "tcp", to)
			if err != nil {
				return fmt.Errorf("send hello: %w", err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(pkt); err != nil {
				return fmt.Errorf("send hello to %s: %w", to, err)
			}
			if !g.json {
				fmt.Fprintf(g.out, "sent v%d hello for %s (%d bytes, retry %d) to %s\n", h.InterfaceVersion, u, len(pkt), retry, to)
			} else {
				fmt.Fprintf(g.out, `{"uuid":%q,"interface_version":%d,"bytes":%d,"retry_count":%d,"to":%q}`+"\n", u.String(), h.InterfaceVersion, len(pkt), retry, to)
			}
			return nil
		},
	}
	f := send.Flags()
	f.StringVar(&to, "to", "127.0.0.1:9971", "hello listener address")
	f.StringVar(&uuid, "uuid", "", "device UUID (required)")
	f.StringArrayVar(&hashes, "pki-hash", nil, "trusted root hash ALG:HEX (repeatable; v3 hello)")
	f.StringVar(&pid, "pid", "", "PID for a v2 (PSK) hello")
	f.Uint32Var(&retry, "retry", 0, "retry count")
	f.StringVar(&from, "from", "", "source IP to send from")
	f.BoolVar(&adminSet, "admin-credentials-set", true, "admin-credentials field of the hello")
	_ = send.MarkFlagRequired("uuid")
	hello.AddCommand(send)
	return hello
}
