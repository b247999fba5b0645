package listener

import (
	"context"
	"net"

	"github.com/amtprov/amtprov/libs/service"
)

// Start binds the hello port and registers the listener as a runner of lc.
// The service's own main and `amtprov dev` both wire it through here.
func Start(lc *service.Lifecycle, cfg Config, pub Publisher, opts Options) (*Listener, net.Addr, error) {
	l, err := New(cfg, pub, opts)
	if err != nil {
		return nil, nil, err
	}
	ln, err := l.Listen()
	if err != nil {
		return nil, nil, err
	}
	lc.Go("hello-listener", func(ctx context.Context) error { return l.Serve(ctx, ln) })
	return l, ln.Addr(), nil
}
