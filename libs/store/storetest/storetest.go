// Package storetest gives each test its own freshly migrated PostgreSQL
// database. With DATABASE_URL set (a role that may CREATE DATABASE; `make
// test` sets it) databases are created there; without it, one private
// cluster per test process is started from the local binaries with pglocal.
//
// A package whose tests use New should run them through Main so that the
// private cluster (if one was started) is stopped and removed at the end:
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amtprov/amtprov/libs/store"
	"github.com/amtprov/amtprov/libs/store/pglocal"
)

const setupTimeout = 2 * time.Minute

// server is the PostgreSQL that test databases are created on: DATABASE_URL,
// or a private cluster started on first use and shared by the test process.
// This is the package's one piece of process-wide state, because a test
// process must not start a cluster per test.
type server struct {
	once sync.Once
	url  string
	err  error
	stop func(context.Context) error
	dir  string
}

var shared server

func (s *server) get() (string, error) {
	s.once.Do(func() {
		if u := os.Getenv("DATABASE_URL"); u != "" {
			s.url = u
			return
		}
		dir, err := os.MkdirTemp("", "amtprov-storetest-")
		if err != nil {
			s.err = fmt.Errorf("storetest: %w", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		s.dir = dir
		s.url, s.stop, s.err = pglocal.Start(ctx, dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if s.err != nil {
			s.err = fmt.Errorf("storetest: DATABASE_URL is unset and no private cluster could be started: %w", s.err)
		}
	})
	return s.url, s.err
}

func (s *server) close() error {
	if s.stop == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	err := s.stop(ctx)
	if rerr := os.RemoveAll(s.dir); err == nil {
		err = rerr
	}
	return err
}

// Main runs the tests of a package and then stops and removes the private
// cluster if one was started. Call it from TestMain; the test binary exits
// with m.Run's status when TestMain returns.
func Main(m *testing.M) {
	m.Run()
	if err := shared.close(); err != nil {
		fmt.Fprintln(os.Stderr, "storetest: stop private cluster:", err)
	}
}

// New creates a database named t_<random>, applies the migrations and
// returns a pool on it. The pool is closed and the database dropped when the
// test ends.
func New(t testing.TB) *pgxpool.Pool {
	t.Helper()
	u := NewEmpty(t)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	pool, err := store.Open(ctx, u)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the drop: cleanups are last-in first-out
	if err := store.Migrate(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return pool
}

// NewEmpty creates an empty database named t_<random> (no migrations) and
// returns its URL, for tests of code that opens or migrates a database
// itself. The database is dropped, connections and all, when the test ends.
func NewEmpty(t testing.TB) string {
	t.Helper()
	base, err := shared.get()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("storetest: connect to the test server: %v", err)
	}
	defer admin.Close(ctx)
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	name := "t_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("storetest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("storetest: drop %s: connect: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("storetest: drop %s: %v", name, err)
		}
	})
	return withDatabase(base, name)
}

// withDatabase points a connection string at another database.
func withDatabase(base, name string) string {
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		u.RawPath = ""
		return u.String()
	}
	return base + " dbname=" + name // key=value form: the last dbname wins
}
