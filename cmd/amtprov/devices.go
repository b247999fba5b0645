package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/service"
)

// apiError is the error body of the HTTP API (INTERFACES.md "HTTP API").
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// getJSON fetches path from the API into out, turning error bodies into errors.
func (g *globals) getJSON(ctx context.Context, path string, out any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(g.api, "/")+path, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: --api %q: %v", service.ErrUsage, g.api, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("inventory API at %s: %w (is amtprov dev or the inventory service running?)", g.api, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			return nil, fmt.Errorf("%s: %s", e.Error.Code, e.Error.Message)
		}
		return nil, fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
	}
	return body, nil
}

type deviceJSON struct {
	UUID           string `json:"uuid"`
	FirstSeen      string `json:"first_seen"`
	LastSeen       string `json:"last_seen"`
	Identification struct {
		Hostname string `json:"hostname"`
		FQDN     string `json:"fqdn"`
	} `json:"identification"`
	Location struct {
		IP          string `json:"ip"`
		LastHelloAt string `json:"last_hello_at"`
	} `json:"location"`
	Capability struct {
		AMTVersion        string `json:"amt_version"`
		ProvisioningState string `json:"provisioning_state"`
		ControlMode       string `json:"control_mode"`
		HelloVersion      int    `json:"hello_interface_version"`
		RootHashes        []struct {
			Alg string `json:"alg"`
			Hex string `json:"hex"`
		} `json:"root_hashes"`
	} `json:"capability"`
	Provisioning struct {
		State     string `json:"state"`
		ErrorCode string `json:"error_code"`
	} `json:"provisioning"`
}

func newDevicesCmd(g *globals) *cobra.Command {
	devices := &cobra.Command{Use: "devices", Short: "The device inventory"}
	var state string
	list := &cobra.Command{
		Use:   "list [--state pre|in|post]",
		Short: "Inventory, one device a line",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if state != "" {
				if _, err := amt.ParseProvisioningState(state); err != nil {
					return fmt.Errorf("%w: --state: %v", service.ErrUsage, err)
				}
			}
			var all []json.RawMessage
			after := ""
			for {
				q := url.Values{"limit": {"500"}}
				if state != "" {
					q.Set("state", state)
				}
				if after != "" {
					q.Set("after", after)
				}
				var page struct {
					Devices []json.RawMessage `json:"devices"`
					Next    string            `json:"next"`
				}
				if _, err := g.getJSON(cmd.Context(), "/v1/devices?"+q.Encode(), &page); err != nil {
					return err
				}
				all = append(all, page.Devices...)
				if page.Next == "" {
					break
				}
				after = page.Next
			}
			if g.json {
				return json.NewEncoder(g.out).Encode(map[string]any{"devices": all})
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "UUID\tIP\tSTATE\tAMT\tHELLO\tLAST SEEN\tPROVISIONING")
			for _, raw := range all {
				var d deviceJSON
				if err := json.Unmarshal(raw, &d); err != nil {
					return fmt.Errorf("decode device: %w", err)
				}
				prov := d.Provisioning.State
				if d.Provisioning.ErrorCode != "" {
					prov += " " + d.Provisioning.ErrorCode
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\tv%d\t%s\t%s\n", d.UUID, dash(d.Location.IP), dash(d.Capability.ProvisioningState),
					dash(d.Capability.AMTVersion), d.Capability.HelloVersion, dash(d.LastSeen), dash(prov))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&state, "state", "", "only devices in this provisioning state: pre, in or post")
	show := &cobra.Command{
		Use:   "show UUID",
		Short: "One device: identification, location, capability, last provisioning result",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := amt.ParseUUID(args[0])
			if err != nil {
				return fmt.Errorf("%w: %v", service.ErrUsage, err)
			}
			body, err := g.getJSON(cmd.Context(), "/v1/devices/"+u.String(), nil)
			if err != nil {
				return err
			}
			if g.json {
				var buf bytes.Buffer
				if err := json.Indent(&buf, body, "", "  "); err != nil {
					return err
				}
				buf.WriteByte('\n')
				_, err := buf.WriteTo(g.out)
				return err
			}
			var d deviceJSON
			if err := json.Unmarshal(body, &d); err != nil {
				return fmt.Errorf("decode device: %w", err)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, dash(v)) }
			row("uuid", d.UUID)
			row("first seen", d.FirstSeen)
			row("last seen", d.LastSeen)
			row("ip", d.Location.IP)
			row("last hello", d.Location.LastHelloAt)
			row("host name", d.Identification.Hostname)
			row("fqdn", d.Identification.FQDN)
			row("amt version", d.Capability.AMTVersion)
			row("provisioning state", d.Capability.ProvisioningState)
			row("control mode", d.Capability.ControlMode)
			row("hello version", strconv.Itoa(d.Capability.HelloVersion))
			for _, h := range d.Capability.RootHashes {
				row("trusted root", h.Alg+":"+h.Hex)
			}
			row("provisioning", strings.TrimSpace(d.Provisioning.State+" "+d.Provisioning.ErrorCode))
			return tw.Flush()
		},
	}
	devices.AddCommand(list, show)
	return devices
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
