package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/service"
)

func newEventsCmd(g *globals) *cobra.Command {
	ev := &cobra.Command{Use: "events", Short: "The event stream"}
	var subject string
	tail := &cobra.Command{
		Use:   "tail [--subject S]",
		Short: "Print events as they arrive (default subject amt.v1.>)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.nats == "" {
				return fmt.Errorf("%w: --nats (or NATS_URL) is required; `amtprov dev` prints its NATS URL in the ready line", service.ErrUsage)
			}
			ctx := cmd.Context()
			nc, err := bus.Connect(ctx, bus.Config{URL: g.nats, Name: "amtprov-events-tail"}, discardLogger())
			if err != nil {
				return err
			}
			defer nc.Close()
			msgs := make(chan *nats.Msg, 4096)
			// By default, every event subject and nothing else: the
			// request/reply subjects under amt.v1. are not events.
			subjects := events.StreamSubjectList()
			if cmd.Flags().Changed("subject") {
				subjects = []string{subject}
			}
			for _, s := range subjects {
				sub, err := nc.ChanSubscribe(s, msgs)
				if err != nil {
					return fmt.Errorf("%w: subscribe %s: %v", service.ErrUsage, s, err)
				}
				defer sub.Unsubscribe()
			}
			if err := nc.FlushTimeout(5 * time.Second); err != nil {
				return fmt.Errorf("subscribe %s: %w", subject, err)
			}
			enc := json.NewEncoder(g.out)
			for {
				select {
				case <-ctx.Done():
					return nil
				case m := <-msgs:
					if g.json {
						h := map[string]string{}
						for k := range m.Header {
							h[k] = m.Header.Get(k)
						}
						var data any = json.RawMessage(m.Data)
						if !json.Valid(m.Data) {
							data = string(m.Data)
						}
						if err := enc.Encode(map[string]any{"subject": m.Subject, "headers": h, "data": data}); err != nil {
							return err
						}
						continue
					}
					fmt.Fprintf(g.out, "%s %s %s %s\n", m.Header.Get(events.HeaderTime), m.Subject, m.Header.Get(events.HeaderType), m.Data)
				}
			}
		},
	}
	tail.Flags().StringVar(&subject, "subject", events.StreamSubjects, "subject filter (default: every event subject)")
	ev.AddCommand(tail)
	return ev
}
