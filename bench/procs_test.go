package bench

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// -bin names a directory holding agbot, anax-agent and hzn (make build); without it the
// benchmarks build them once into a temporary directory.
var binDir = flag.String("bin", "", "directory with agbot, anax-agent and hzn (make build); empty: build them")

var (
	buildOnce sync.Once
	builtDir  string
	buildErr  error
	atExit    []func() // run by TestMain after every benchmark: state shared between b.N runs
	atExitMu  sync.Mutex
)

func onExit(fn func()) {
	atExitMu.Lock()
	defer atExitMu.Unlock()
	atExit = append(atExit, fn)
}

func runAtExit() {
	atExitMu.Lock()
	defer atExitMu.Unlock()
	for i := len(atExit) - 1; i >= 0; i-- {
		atExit[i]()
	}
	atExit = nil
}

// binary returns the path of one of the project's programs.
func binary(tb testing.TB, name string) string {
	tb.Helper()
	if *binDir != "" {
		p, err := filepath.Abs(filepath.Join(*binDir, name))
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := os.Stat(p); err != nil {
			tb.Fatalf("-bin %s: %v (run make build)", *binDir, err)
		}
		return p
	}
	buildOnce.Do(func() {
		builtDir, buildErr = os.MkdirTemp("", "anax-bench-bin-")
		if buildErr != nil {
			return
		}
		onExit(func() { os.RemoveAll(builtDir) })
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-trimpath", "-o", builtDir+"/", "./cmd/agbot", "./cmd/anax-agent", "./cmd/hzn")
		cmd.Dir = filepath.Dir(filepath.Dir(file))
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return filepath.Join(builtDir, name)
}

// procStat is what /proc says about a process: CPU time (user+system) and memory.
type procStat struct {
	CPU          time.Duration
	RSSKiB, HWM  int64
	FileKiB      int64 // the part of RSSKiB that is file pages (RssFile: bbolt's mapped state file)
	Threads, FDs int
}

func readProc(pid int) (procStat, error) {
	var ps procStat
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	// Fields after the command name (which may hold spaces) start at state (field 3).
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	ps.CPU = time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
	st, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	defer st.Close()
	sc := bufio.NewScanner(st)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.ParseInt(strings.Fields(v + " 0")[0], 10, 64)
		switch k {
		case "VmRSS":
			ps.RSSKiB = n
		case "VmHWM":
			ps.HWM = n
		case "RssFile":
			ps.FileKiB = n
		case "Threads":
			ps.Threads = int(n)
		}
	}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		ps.FDs = len(ents)
	}
	return ps, nil
}
