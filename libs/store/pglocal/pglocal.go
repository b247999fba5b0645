// Package pglocal runs a private PostgreSQL cluster from the PostgreSQL
// server binaries installed on the machine, for `amtprov dev` and for tests
// when DATABASE_URL is not set. It does what scripts/pg.sh does: initdb once
// in a directory, start on a free loopback port with the unix socket in the
// same directory, trust authentication for the `postgres` role, durability
// settings off (a dev/test cluster trades crash safety for speed). When run
// as root it runs the server as the `postgres` system user, creating it if
// missing, because initdb and postgres refuse to run as root.
package pglocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrNoBinaries is returned when no initdb/pg_ctl pair can be found.
var ErrNoBinaries = errors.New(`no PostgreSQL server binaries (initdb, pg_ctl) found in /usr/lib/postgresql/*/bin or PATH; install them:
  Debian/Ubuntu:      sudo apt-get install -y postgresql
  Fedora/RHEL:        sudo dnf install -y postgresql-server
  macOS (Homebrew):   brew install postgresql@15
or point DATABASE_URL at an existing PostgreSQL (a role that may CREATE DATABASE)`)

const (
	startTimeout = 60 * time.Second // pg_ctl -t
	startTries   = 3                // a free port can be taken between probing it and binding it
)

// Start makes sure a cluster lives in dir (creating dir and running initdb
// the first time) and that it runs, and returns its URL. If the cluster in
// dir already runs (another process started it), Start returns its URL and
// leaves it alone. stop shuts the cluster down (fast mode); the data stays in
// dir for the next Start. A nil log discards the log.
func Start(ctx context.Context, dir string, log *slog.Logger) (url string, stop func(context.Context) error, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin, err := findBinaries()
	if err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("pglocal: create %s: %w", dir, err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return "", nil, fmt.Errorf("pglocal: %w", err)
	}
	own, err := newOwner(dir)
	if err != nil {
		return "", nil, fmt.Errorf("pglocal: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return "", nil, fmt.Errorf("pglocal: %w", err)
	}
	defer unlock()

	c := cluster{bin: bin, dir: dir, data: filepath.Join(dir, "data"), own: own}
	if err := c.initdb(ctx); err != nil {
		return "", nil, err
	}
	port, running := c.runningPort(ctx)
	if !running {
		if port, err = c.start(ctx); err != nil {
			return "", nil, err
		}
		log.InfoContext(ctx, "started private PostgreSQL", "dir", dir, "port", port, "bin", bin)
	} else {
		log.InfoContext(ctx, "private PostgreSQL already running", "dir", dir, "port", port)
	}
	url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	return url, c.stop, nil
}

type cluster struct {
	bin, dir, data string
	own            owner
}

func (c cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = "/" // the server user may not be able to read the caller's cwd
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	c.own.apply(cmd)
	err := cmd.Run()
	return out.Bytes(), err
}

func (c cluster) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.data, "PG_VERSION")); err == nil {
		return nil
	}
	out, err := c.run(ctx, "initdb", "-D", c.data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")
	_ = os.WriteFile(filepath.Join(c.dir, "initdb.log"), out, 0o644) // best effort: kept for a human to read
	if err != nil {
		return fmt.Errorf("pglocal: initdb in %s: %w%s\n%s", c.data, err, c.own.hint(c.dir), tail(out))
	}
	return nil
}

// runningPort reports whether the cluster runs and on which port (from the
// port file written when it was started).
func (c cluster) runningPort(ctx context.Context) (int, bool) {
	if _, err := c.run(ctx, "pg_ctl", "-D", c.data, "status"); err != nil {
		return 0, false
	}
	b, err := os.ReadFile(filepath.Join(c.dir, "port"))
	if err != nil {
		return 0, false
	}
	port, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return port, err == nil
}

func (c cluster) start(ctx context.Context) (int, error) {
	logFile := filepath.Join(c.dir, "server.log")
	var lastErr error
	for try := range startTries {
		// The port of the last run first, so that a restarted cluster keeps
		// its URL (pools of a running process reconnect to it).
		port, ok := 0, false
		if try == 0 {
			port, ok = c.lastPort()
		}
		if !ok {
			var err error
			if port, err = freePort(); err != nil {
				return 0, fmt.Errorf("pglocal: %w", err)
			}
		}
		if err := os.WriteFile(filepath.Join(c.dir, "port"), []byte(strconv.Itoa(port)+"\n"), 0o644); err != nil {
			return 0, fmt.Errorf("pglocal: %w", err)
		}
		// pg_ctl runs the server through a shell: quote the socket directory.
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k '%s' -c fsync=off -c synchronous_commit=off "+
			"-c full_page_writes=off -c max_connections=300", port, strings.ReplaceAll(c.dir, "'", `'\''`))
		out, err := c.run(ctx, "pg_ctl", "-D", c.data, "-l", logFile, "-w", "-t", strconv.Itoa(int(startTimeout.Seconds())), "-o", opts, "start")
		if err == nil {
			return port, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("pglocal: start server: %w", ctx.Err())
		}
		logText, _ := os.ReadFile(logFile)
		lastErr = fmt.Errorf("pglocal: start server in %s on port %d: %w\n%s\n%s", c.data, port, err, tail(out), tail(logText))
	}
	return 0, lastErr
}

func (c cluster) stop(ctx context.Context) error {
	if out, err := c.run(ctx, "pg_ctl", "-D", c.data, "-m", "fast", "-w", "stop"); err != nil {
		return fmt.Errorf("pglocal: stop server in %s: %w\n%s", c.data, err, tail(out))
	}
	return nil
}

// lastPort is the port of the previous run if it is free now.
func (c cluster) lastPort() (int, bool) {
	b, err := os.ReadFile(filepath.Join(c.dir, "port"))
	if err != nil {
		return 0, false
	}
	port, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || port <= 0 || port > 65535 {
		return 0, false
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return 0, false
	}
	l.Close()
	return port, true
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// findBinaries picks the newest /usr/lib/postgresql/<major>/bin holding
// initdb and pg_ctl, else the directory of initdb on PATH.
func findBinaries() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	major := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	sort.SliceStable(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// tail keeps the end of a command's output for an error message.
func tail(b []byte) string {
	const max = 2000
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		s = "..." + s[len(s)-max:]
	}
	return s
}
