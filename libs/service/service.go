// Package service is the lifecycle every amtprov binary shares: configuration
// from flags with environment defaults, the operations endpoints (/healthz,
// /readyz, /metrics), background runners, and shutdown in the reverse order
// of start-up. Each main reads top to bottom as the story of its service and
// hands the start-up and shut-down mechanics to this package.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Lifecycle collects what a process started so that it can stop it again.
type Lifecycle struct {
	name string
	log  *slog.Logger

	mu      sync.Mutex
	closers []closer
	checks  []check
	runners []runner
	// ShutdownTimeout bounds the whole shutdown; default 30 s.
	ShutdownTimeout time.Duration
}

type closer struct {
	name string
	fn   func(context.Context) error
}

type check struct {
	name string
	fn   func(context.Context) error
}

type runner struct {
	name string
	fn   func(context.Context) error
}

// New returns an empty lifecycle for the named service.
func New(name string, log *slog.Logger) *Lifecycle {
	return &Lifecycle{name: name, log: log, ShutdownTimeout: 30 * time.Second}
}

// OnShutdown registers fn to run at shutdown. Shutdown runs them in the
// reverse order of registration, so register each resource right after it
// is created.
func (l *Lifecycle) OnShutdown(name string, fn func(context.Context) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closers = append(l.closers, closer{name, fn})
}

// Ready registers a readiness check served by /readyz.
func (l *Lifecycle) Ready(name string, fn func(context.Context) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checks = append(l.checks, check{name, fn})
}

// Go registers a runner: Run starts it and, if it returns an error before
// shutdown, stops the whole process. A runner must return when its ctx ends.
func (l *Lifecycle) Go(name string, fn func(context.Context) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runners = append(l.runners, runner{name, fn})
}

// Serve registers an HTTP server on ln as a runner, with a graceful
// shutdown. It returns the address actually bound.
func (l *Lifecycle) Serve(name string, ln net.Listener, h http.Handler) string {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	l.Go(name, func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			return fmt.Errorf("%s: %w", name, err)
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				return fmt.Errorf("%s: shutdown: %w", name, err)
			}
			if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		}
	})
	return ln.Addr().String()
}

// OpsHandler serves /healthz (the process is alive), /readyz (every
// readiness check passes within 2 s) and /metrics; every other path goes to
// api, when given.
func (l *Lifecycle) OpsHandler(metrics http.Handler, api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := l.checkReady(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintln(w, err)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	if api != nil {
		mux.Handle("/", api)
	}
	return mux
}

func (l *Lifecycle) checkReady(ctx context.Context) error {
	l.mu.Lock()
	checks := append([]check(nil), l.checks...)
	l.mu.Unlock()
	var errs []error
	for _, c := range checks {
		if err := c.fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

// WaitReady polls the readiness checks (every 20 ms) until all pass,
// within ends (an error naming the checks still failing) or ctx ends.
func (l *Lifecycle) WaitReady(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := l.checkReady(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s: %w", within, err)
		case <-tick.C:
		}
	}
}

// Run starts every runner and blocks until ctx ends (the signal) or a
// runner fails; then it cancels the runners, waits for them, and runs the
// shutdown functions in reverse order. It returns the first runner error and
// any shutdown errors.
func (l *Lifecycle) Run(ctx context.Context) error {
	l.mu.Lock()
	runners := append([]runner(nil), l.runners...)
	l.mu.Unlock()

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(runners))
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.fn(rctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", r.name, err)
				cancel()
			}
		}()
	}
	var runErr error
	select {
	case <-rctx.Done():
	case runErr = <-errc:
		l.log.Error("runner failed, shutting down", "service", l.name, "err", runErr)
	}
	cancel()
	wg.Wait()
	if runErr == nil {
		select {
		case runErr = <-errc:
		default:
		}
	}
	return errors.Join(runErr, l.Shutdown(context.WithoutCancel(ctx)))
}

// Shutdown runs the registered shutdown functions in reverse order within
// ShutdownTimeout. Run calls it; call it directly only without Run.
func (l *Lifecycle) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	closers := l.closers
	l.closers = nil
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, l.ShutdownTimeout)
	defer cancel()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		c := closers[i]
		start := time.Now()
		if err := c.fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown %s: %w", c.name, err))
			l.log.Error("shutdown step failed", "service", l.name, "step", c.name, "err", err)
			continue
		}
		l.log.Debug("shutdown step done", "service", l.name, "step", c.name, "took", time.Since(start))
	}
	return errors.Join(errs...)
}
