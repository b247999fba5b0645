package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// upProc is one child process of `amtprov up`: its own process group (so a
// signal reaches everything it forked), its output in a log file, and a
// channel closed when it exits.
type upProc struct {
	name    string // e.g. "nats-2", "provisioner-1"
	cmd     *exec.Cmd
	logPath string
	// What it was started with, to start it again (restart).
	path, logDir string
	args, env    []string
	started      time.Time
	done         chan struct{}
	stopped      chan struct{} // closed when stop begins: the exit is expected

	mu       sync.Mutex
	err      error // the exit, once done is closed
	stopOnce sync.Once
}

// errUpProcExited reports a child that exited while it was expected to run.
var errUpProcExited = errors.New("process exited")

// startUpProc starts path with args and env (added to this process's
// environment; later entries win) and logs its stdout and stderr to
// logDir/<name>.log.
func startUpProc(name, path string, args, env []string, logDir string) (*upProc, error) {
	logPath := filepath.Join(logDir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: log file: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = upSysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, path, err)
	}
	p := &upProc{name: name, cmd: cmd, logPath: logPath, path: path, logDir: logDir, args: args, env: env,
		started: time.Now(), done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		_ = logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// restart starts the same command again, as a new process.
func (p *upProc) restart() (*upProc, error) {
	return startUpProc(p.name, p.path, p.args, p.env, p.logDir)
}

// upGroup is the processes of one stage (the NATS nodes, the replicas of a
// service); a restarted process takes its predecessor's place. Once the
// group is stopping it takes no new process.
type upGroup struct {
	mu      sync.Mutex
	procs   []*upProc
	closing bool
}

func (g *upGroup) add(p *upProc) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.procs = append(g.procs, p)
}

// replace puts next in prev's place; false when the group is stopping.
func (g *upGroup) replace(prev, next *upProc) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	for i, p := range g.procs {
		if p == prev {
			g.procs[i] = next
			return true
		}
	}
	g.procs = append(g.procs, next)
	return true
}

// stop stops every process of the group in parallel.
func (g *upGroup) stop(grace time.Duration) error {
	g.mu.Lock()
	g.closing = true
	procs := append([]*upProc(nil), g.procs...)
	g.mu.Unlock()
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() { errs[i] = p.stop(grace) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// pid is the process id, which is also its process group id.
func (p *upProc) pid() int { return p.cmd.Process.Pid }

// exitErr is how the process ended; call it after done is closed.
func (p *upProc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// stop sends SIGTERM to the process group and waits up to grace for the
// process to exit, then SIGKILLs the group. Signalling the group, not the
// process, leaves no orphans behind.
func (p *upProc) stop(grace time.Duration) error {
	var err error
	p.stopOnce.Do(func() {
		close(p.stopped)
		select {
		case <-p.done:
			return
		default:
		}
		if serr := signalGroup(p.pid(), syscall.SIGTERM); serr != nil && !errors.Is(serr, syscall.ESRCH) {
			err = fmt.Errorf("stop %s: SIGTERM: %w", p.name, serr)
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			if kerr := signalGroup(p.pid(), syscall.SIGKILL); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
				err = errors.Join(err, fmt.Errorf("stop %s: SIGKILL: %w", p.name, kerr))
			}
			<-p.done
			err = errors.Join(err, fmt.Errorf("stop %s: did not exit within %s of SIGTERM; killed", p.name, grace))
		}
		// Anything the process forked and left behind in its group goes too.
		_ = signalGroup(p.pid(), syscall.SIGKILL)
	})
	return err
}

// logTail returns the last lines of the process's log, for error messages.
func (p *upProc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.TrimSpace(string(b))
}

// exitedError describes an unexpected exit with the end of the log.
func (p *upProc) exitedError() error {
	return fmt.Errorf("%s: %w (%v); log %s ends:\n%s", p.name, errUpProcExited, p.exitErr(), p.logPath, p.logTail())
}

// waitHTTP polls url until it answers 200, the process exits, ctx ends or
// timeout passes.
func (p *upProc) waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	switch err := waitHTTP(ctx, url, timeout, p.done); {
	case err == nil:
		return nil
	case errors.Is(err, errUpProcExited):
		return p.exitedError()
	default:
		return fmt.Errorf("wait for %s: %w; log %s", p.name, err, p.logPath)
	}
}

// waitHTTP polls url until it answers 200, exited is closed (the error is
// errUpProcExited), ctx ends or timeout passes (the error has the last
// answer).
func waitHTTP(ctx context.Context, url string, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-exited:
			return errUpProcExited
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %s)", url, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// freeAddrs reserves n distinct free TCP ports on host and returns them as
// host:port. The ports are released before the caller uses them, so another
// program could take one in between: callers fail clearly if so.
func freeAddrs(host string, n int) ([]string, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("allocate a free port on %s: %w", host, err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// portOf returns the port of host:port.
func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return port
}
