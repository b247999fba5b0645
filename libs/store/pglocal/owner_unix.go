//go:build unix

package pglocal

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// owner runs commands as the user who owns the cluster: the caller, or the
// `postgres` system user when the caller is root.
type owner struct{ cred *syscall.Credential }

func newOwner(dir string) (owner, error) {
	if os.Geteuid() != 0 {
		return owner{}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		out, aerr := exec.Command("useradd", "--system", "--home-dir", "/var/lib/postgresql", "--shell", "/bin/false", "postgres").CombinedOutput()
		if aerr != nil {
			return owner{}, fmt.Errorf("running as root needs a postgres user; useradd postgres: %w: %s", aerr, out)
		}
		if u, err = user.Lookup("postgres"); err != nil {
			return owner{}, fmt.Errorf("look up postgres user: %w", err)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return owner{}, fmt.Errorf("postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return owner{}, fmt.Errorf("postgres gid %q: %w", u.Gid, err)
	}
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		return owner{}, fmt.Errorf("chown %s to postgres: %w", dir, err)
	}
	return owner{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}, nil
}

func (o owner) apply(cmd *exec.Cmd) {
	if o.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.cred}
	}
}

// hint explains the usual reason initdb fails as root: the postgres user
// cannot reach dir because a parent directory is private (e.g. /root or a
// test's 0700 temporary directory).
func (o owner) hint(dir string) string {
	if o.cred == nil {
		return ""
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			return fmt.Sprintf(" (the server runs as user postgres, which cannot enter %s: use a data directory whose parents are all world-searchable, e.g. under /tmp or /var/lib)", d)
		}
		if d == filepath.Dir(d) {
			return ""
		}
	}
}

// lockDir serialises Start calls on one directory across processes.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(dir+"/pglocal.lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}
