package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
)

// Config says how to reach NATS.
type Config struct {
	URL       string // comma-separated server URLs; default nats://127.0.0.1:4222
	CredsFile string // NATS credentials file (JWT + nkey seed) of this service
	TLSCert   string // client certificate (PEM) for mutual TLS; needs TLSKey
	TLSKey    string
	TLSCA     string // CA bundle (PEM) that signed the server certificate
	Name      string // connection name shown by the server's monitoring
}

// Connect dials NATS. A failed initial connect is retried with capped
// exponential backoff until ctx ends (so a service may start before NATS);
// once connected the connection reconnects forever, and disconnects,
// reconnects and asynchronous errors are logged to log.
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (*nats.Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	servers := cfg.URL
	if servers == "" {
		servers = nats.DefaultURL
	}
	safe := RedactURL(servers)
	opts, err := connOptions(cfg, log.With("nats", safe))
	if err != nil {
		return nil, err
	}

	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0 // until ctx ends
	var nc *nats.Conn
	attempt := 0
	op := func() error {
		attempt++
		c, err := nats.Connect(servers, opts...)
		if err != nil {
			if isPermanentConnectError(err) {
				return backoff.Permanent(err)
			}
			log.WarnContext(ctx, "nats connect failed; retrying", "nats", safe, "attempt", attempt, "err", err)
			return err
		}
		nc = c
		return nil
	}
	if err := backoff.Retry(op, backoff.WithContext(b, ctx)); err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", safe, err)
	}
	log.InfoContext(ctx, "nats connected", "nats", RedactURL(nc.ConnectedUrl()), "server_id", nc.ConnectedServerId())
	return nc, nil
}

func connOptions(cfg Config, log *slog.Logger) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "url", RedactURL(c.ConnectedUrl()))
		}),
		nats.ClosedHandler(func(c *nats.Conn) {
			log.Info("nats connection closed", "err", c.LastError())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats asynchronous error", "subject", subj, "err", err)
		}),
	}
	// Missing or unreadable files are configuration errors: fail at once
	// instead of retrying until ctx ends.
	for _, f := range []struct{ what, path string }{
		{"credentials file", cfg.CredsFile}, {"TLS certificate", cfg.TLSCert}, {"TLS key", cfg.TLSKey}, {"TLS CA", cfg.TLSCA},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("bus config: %s: %w", f.what, err)
		}
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	switch {
	case cfg.TLSCert != "" && cfg.TLSKey != "":
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	case cfg.TLSCert != "" || cfg.TLSKey != "":
		return nil, errors.New("bus config: TLSCert and TLSKey must be set together")
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	return opts, nil
}

// isPermanentConnectError reports errors retrying cannot fix: bad
// credentials or TLS files, or a rejected identity.
func isPermanentConnectError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) ||
		errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) ||
		errors.Is(err, nats.ErrAccountAuthExpired) ||
		errors.Is(err, nats.ErrNkeysNotSupported) ||
		errors.Is(err, nats.ErrInvalidArg)
}

// RedactURL removes passwords and tokens from a (comma-separated list of)
// NATS URL(s) so it can be logged.
func RedactURL(servers string) string {
	parts := strings.Split(servers, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, err := url.Parse(p)
		if err != nil || u.User == nil {
			parts[i] = p
			continue
		}
		if _, hasPass := u.User.Password(); !hasPass {
			u.User = url.User("xxxxx") // a lone user part is a token
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}
