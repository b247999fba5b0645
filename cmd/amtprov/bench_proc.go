package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports (the kernel fixes it for
// user space whatever CONFIG_HZ is).
const clockTicks = 100

// maxProcFile bounds what is read from a /proc file.
const maxProcFile = 64 << 10

// procUsage is one process's CPU time and peak resident set.
type procUsage struct {
	CPUSeconds float64 // user + system
	PeakRSSMB  float64 // VmHWM
}

// readProcUsage reads one process's CPU time (its own, plus its reaped
// children's when withChildren) and VmHWM under root (normally "/proc";
// tests pass a fake tree).
func readProcUsage(root string, pid int, withChildren bool) (procUsage, procStat, error) {
	dir := root + "/" + strconv.Itoa(pid)
	b, err := readSmall(dir + "/stat")
	if err != nil {
		return procUsage{}, procStat{}, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	st, err := parseProcStat(b)
	if err != nil {
		return procUsage{}, procStat{}, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	status, err := readSmall(dir + "/status")
	if err != nil {
		return procUsage{}, procStat{}, fmt.Errorf("peak RSS of pid %d: %w", pid, err)
	}
	kb, err := parseStatusKB(status, "VmHWM")
	if err != nil {
		return procUsage{}, procStat{}, fmt.Errorf("peak RSS of pid %d: %w", pid, err)
	}
	cpu := st.utime + st.stime
	if withChildren {
		cpu += st.cutime + st.cstime
	}
	return procUsage{CPUSeconds: cpu, PeakRSSMB: float64(kb) / 1024}, st, nil
}

// benchProc is a process the benchmark measures. tree also counts its
// children, live (read one by one) and reaped (cutime, cstime): a
// PostgreSQL postmaster and its backends.
type benchProc struct {
	service string
	pid     int
	tree    bool
}

// svcUsage is a service's CPU time summed over its processes and the
// largest peak RSS of any one of them.
type svcUsage struct {
	CPUSeconds float64
	PeakRSSMB  float64
	procs      int
}

// usageOf measures procs by service. A process that cannot be read (it
// exited) is logged and left out.
func usageOf(root string, procs []benchProc, log *slog.Logger) map[string]svcUsage {
	out := map[string]svcUsage{}
	var children map[int][]int
	for _, p := range procs {
		u, _, err := readProcUsage(root, p.pid, p.tree)
		if err != nil {
			log.Warn("bench: process not measured", "service", p.service, "err", err)
			continue
		}
		s := out[p.service]
		if p.tree {
			if children == nil {
				children = childrenOf(root)
			}
			for _, c := range children[p.pid] {
				cu, _, err := readProcUsage(root, c, false)
				if err != nil {
					continue // exited meanwhile: its time is in the parent's cutime
				}
				u.CPUSeconds += cu.CPUSeconds
				u.PeakRSSMB = max(u.PeakRSSMB, cu.PeakRSSMB)
			}
		}
		s.CPUSeconds += u.CPUSeconds
		s.PeakRSSMB = max(s.PeakRSSMB, u.PeakRSSMB)
		s.procs++
		out[p.service] = s
	}
	return out
}

// childrenOf maps every parent pid to its children's pids.
func childrenOf(root string) map[int][]int {
	out := map[int][]int{}
	ents, err := os.ReadDir(root)
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := readSmall(root + "/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		st, err := parseProcStat(b)
		if err != nil {
			continue
		}
		out[st.ppid] = append(out[st.ppid], pid)
	}
	return out
}

// postmasterPID reads the postmaster's pid from postmaster.pid in a
// PostgreSQL data directory: dir itself or a direct subdirectory.
func postmasterPID(dir string) (int, error) {
	candidates := []string{filepath.Join(dir, "postmaster.pid")}
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				candidates = append(candidates, filepath.Join(dir, e.Name(), "postmaster.pid"))
			}
		}
	}
	for _, c := range candidates {
		b, err := readSmall(c)
		if err != nil {
			continue
		}
		line, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil || pid <= 0 {
			return 0, fmt.Errorf("%s: first line %q is not a pid", c, line)
		}
		return pid, nil
	}
	return 0, fmt.Errorf("no postmaster.pid in %s or its subdirectories", dir)
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxProcFile))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// procStat is what the benchmark uses of /proc/<pid>/stat, in seconds.
type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime float64
}

// parseProcStat reads a /proc/<pid>/stat line. The command name (field 2)
// is in parentheses and may contain spaces or parentheses, so fields are
// counted from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("stat: no ')' after the command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')' comes field 3 (state); ppid is field 4, utime, stime,
	// cutime and cstime are fields 14 to 17.
	const off = 3
	if len(f) <= 17-off {
		return procStat{}, fmt.Errorf("stat: %d fields after the command name, want more than %d", len(f), 17-off)
	}
	ppid, err := strconv.Atoi(f[4-off])
	if err != nil {
		return procStat{}, fmt.Errorf("stat: ppid: %w", err)
	}
	var t [4]float64
	for k := range t {
		n, err := strconv.ParseInt(f[14-off+k], 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("stat: field %d: %w", 14+k, err)
		}
		t[k] = float64(n) / clockTicks
	}
	return procStat{ppid: ppid, utime: t[0], stime: t[1], cutime: t[2], cstime: t[3]}, nil
}

// parseStatusKB returns the "kB" value of key in a /proc/<pid>/status file.
func parseStatusKB(b []byte, key string) (uint64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(v), " ")
		if unit != "kB" {
			return 0, fmt.Errorf("status: %s in %q, want kB", key, unit)
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status: %s: %w", key, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("status: no %s line", key)
}

// resetPeakRSS resets a process's VmHWM to its current RSS (Linux:
// writing 5 to clear_refs), so a peak measured afterwards belongs to this
// run and not to an earlier one in the same process.
func resetPeakRSS(root string, pid int) error {
	if err := os.WriteFile(root+"/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS of pid %d: %w", pid, err)
	}
	return nil
}
