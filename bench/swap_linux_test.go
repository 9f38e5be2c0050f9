package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/mount"
	"golang.org/x/sys/unix"

	"github.com/edge-secrets/anax-agent/platform/linux"
	"github.com/edge-secrets/anax-agent/secretfs"
	"github.com/edge-secrets/anax-agent/test/dockertest"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

// genValue is the value of update seq; testdata/reader's gen must stay identical. It is
// self-describing (a 10-digit sequence, '|', a filler byte) so the reader can tell a whole
// value from a torn one, and its length (16 B .. 64 KiB) varies with seq.
func genValue(seq uint64) []byte {
	n := 16 + int((seq*2654435761)%(64<<10-16))
	b := make([]byte, n)
	copy(b, fmt.Sprintf("%010d|", seq))
	for i := 11; i < n; i++ {
		b[i] = byte('a' + seq%26)
	}
	return b
}

// swapMethod is one way of replacing a secret file on the node. setup writes the first value
// under dir (a tmpfs of its own) and returns the host paths a container bind-mounts: file at
// /s (single-file mount) and dirView at /d (directory mount, holding "s").
type swapMethod struct {
	name, usedBy string
	prop         mount.Propagation
	setup        func(tb testing.TB, dir string, first []byte) (file, dirView string, update func([]byte) error)
}

const uid, gid = 1000, 1000

var swapMethods = []swapMethod{
	{name: "mount-swap", usedBy: "this project (secretfs)", prop: mount.PropagationRSlave, setup: setupMountSwap},
	{name: "in-place rewrite", usedBy: "anax", setup: setupInPlace},
	{name: "temp + rename", usedBy: "Vault Agent, Nomad templates (consul-template)", setup: setupRename},
	{name: "..data symlink swap", usedBy: "Kubernetes volumes (AtomicWriter)", setup: setupSymlinkSwap},
}

// setupMountSwap is this project: secretfs in mount-swap mode (design §4).
func setupMountSwap(tb testing.TB, dir string, first []byte) (string, string, func([]byte) error) {
	root := filepath.Join(dir, "secrets")
	fs, err := secretfs.Open(secretfs.Options{Root: root, Mode: secretfs.ModeMountSwap, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatalf("secretfs.Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := fs.Wipe("bench"); err != nil {
			tb.Errorf("wipe: %v", err)
		}
		fs.Close()
		linux.UnmountAll(root)
	})
	st, err := fs.Create(secretfs.Spec{ID: "bench", UID: uid, GID: gid, Secrets: []secretfs.Secret{{Name: "s", Value: first, Format: secretfs.FormatValueOnly}}})
	if err != nil {
		tb.Fatalf("secretfs.Create: %v", err)
	}
	return st.Files["s"], st.DirView, func(v []byte) error {
		return fs.Update("bench", []secretfs.Secret{{Name: "s", Value: v, Format: secretfs.FormatValueOnly}})
	}
}

// setupInPlace rewrites the file in place (open with O_TRUNC, write), as anax does.
func setupInPlace(tb testing.TB, dir string, first []byte) (string, string, func([]byte) error) {
	d := filepath.Join(dir, "inplace")
	file := filepath.Join(d, "s")
	mkdirOwned(tb, d, 0o755)
	if err := os.WriteFile(file, first, 0o400); err != nil {
		tb.Fatal(err)
	}
	chown(tb, file)
	return file, d, func(v []byte) error { return os.WriteFile(file, v, 0o400) }
}

// setupRename writes a temporary file in the same directory and renames it over the old one,
// as consul-template's atomic write does (Vault Agent templates, Nomad templates).
func setupRename(tb testing.TB, dir string, first []byte) (string, string, func([]byte) error) {
	d := filepath.Join(dir, "rename")
	file := filepath.Join(d, "s")
	mkdirOwned(tb, d, 0o755)
	write := func(v []byte) error {
		f, err := os.CreateTemp(d, ".s.tmp")
		if err != nil {
			return err
		}
		_, err = f.Write(v)
		if err == nil {
			err = f.Sync()
		}
		if err == nil {
			err = f.Chmod(0o400)
		}
		if err == nil {
			err = f.Chown(uid, gid)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), file)
		}
		if err != nil {
			os.Remove(f.Name())
		}
		return err
	}
	if err := write(first); err != nil {
		tb.Fatal(err)
	}
	return file, d, write
}

// setupSymlinkSwap is Kubernetes' AtomicWriter: each version is a new directory ..<ts>; the
// ..data symlink is replaced by renaming a new symlink over it; "s" is a symlink to ..data/s;
// the old version's directory is removed.
func setupSymlinkSwap(tb testing.TB, dir string, first []byte) (string, string, func([]byte) error) {
	d := filepath.Join(dir, "k8s")
	mkdirOwned(tb, d, 0o755)
	n := 0
	old := ""
	write := func(v []byte) error {
		n++
		ts := fmt.Sprintf("..%d_%d", time.Now().UnixNano(), n)
		vd := filepath.Join(d, ts)
		if err := os.Mkdir(vd, 0o755); err != nil {
			return err
		}
		f := filepath.Join(vd, "s")
		if err := os.WriteFile(f, v, 0o400); err != nil {
			return err
		}
		if err := os.Chown(f, uid, gid); err != nil {
			return err
		}
		tmp := filepath.Join(d, "..data_tmp")
		if err := os.Symlink(ts, tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(d, "..data")); err != nil {
			return err
		}
		if old != "" {
			if err := os.RemoveAll(filepath.Join(d, old)); err != nil {
				return err
			}
		}
		old = ts
		return nil
	}
	if err := write(first); err != nil {
		tb.Fatal(err)
	}
	if err := os.Symlink("..data/s", filepath.Join(d, "s")); err != nil {
		tb.Fatal(err)
	}
	return filepath.Join(d, "s"), d, write
}

func touch(tb testing.TB, path string) {
	tb.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		tb.Fatal(err)
	}
}

func mkdirOwned(tb testing.TB, d string, mode os.FileMode) {
	tb.Helper()
	if err := os.Mkdir(d, mode); err != nil {
		tb.Fatal(err)
	}
}

func chown(tb testing.TB, path string) {
	tb.Helper()
	if err := os.Chown(path, uid, gid); err != nil {
		tb.Fatal(err)
	}
}

// mountTmpfs mounts a small tmpfs at a new directory, unmounted at cleanup.
func mountTmpfs(tb testing.TB, size string) string {
	tb.Helper()
	d := filepath.Join(tb.TempDir(), "tmpfs")
	if err := os.Mkdir(d, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC, "size="+size+",mode=0755"); err != nil {
		tb.Fatalf("mount tmpfs: %v", err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(d, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmount %s: %v", d, err)
		}
	})
	return d
}

// readerStats is one line of the reader's output (testdata/reader).
type readerStats struct {
	Path      string `json:"path"`
	Reads     int64  `json:"reads"`
	Empty     int64  `json:"empty"`
	Torn      int64  `json:"torn"`
	Errors    int64  `json:"errors"`
	Backwards int64  `json:"backwards"`
	FirstSeq  uint64 `json:"firstSeq"`
	LastSeq   uint64 `json:"lastSeq"`
	Distinct  int64  `json:"distinct"`
	FirstErr  string `json:"firstErr"`
}

// BenchmarkSwapMethods: the ways of replacing a secret on the node, in one harness and one
// run. For each method a reader container (FROM scratch, uid 1000) mounts the secret twice,
// as a single file at /s and through its directory at /d; two goroutines per mount read it in
// a loop while b.N updates of 16 B .. 64 KiB are applied back to back on the host. Reported:
// µs per update (median, p99) and, per mount, the share of empty, torn or failed reads and
// whether the last value reached the container at all.
//
//	go test -run '^$' -bench SwapMethods -benchtime 2000x ./bench/
func BenchmarkSwapMethods(b *testing.B) {
	testenv.RequireRoot(b)
	cli := dockertest.Client(b)
	image := readerImage(b, cli)
	for _, m := range swapMethods {
		b.Run(strings.ReplaceAll(m.name, " ", "_"), func(b *testing.B) {
			dir := mountTmpfs(b, "256m")
			file, dirView, update := m.setup(b, dir, genValue(0))
			ctl := filepath.Join(b.TempDir(), "ctl")
			if err := os.Mkdir(ctl, 0o777); err != nil {
				b.Fatal(err)
			}
			if err := os.Chmod(ctl, 0o777); err != nil {
				b.Fatal(err)
			}
			c := startContainer(b, cli, image, fmt.Sprintf("anax-bench-swap-%d", os.Getpid()), []mount.Mount{
				bindMount(file, "/s", true, m.prop),
				bindMount(dirView, "/d", true, m.prop),
				bindMount(ctl, "/ctl", false, ""),
			})
			// Warm up: one update, seen through /d (every method shows it there), so that
			// secretfs has found the container's mounts before the timed updates start.
			if err := update(genValue(1)); err != nil {
				b.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for !strings.HasPrefix(c.exec("cat", "/d/s"), "0000000001|") {
				if time.Now().After(deadline) {
					b.Fatalf("%s: the warm-up value never reached the container", m.name)
				}
				time.Sleep(20 * time.Millisecond)
			}
			done := c.execAsync(10*time.Minute, "read", "/ctl", "2", "/s", "/d/s")
			waitFile(b, filepath.Join(ctl, "ready"), time.Minute)

			times := make([]time.Duration, 0, b.N)
			touch(b, filepath.Join(ctl, "go"))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				v := genValue(uint64(i + 2))
				t0 := time.Now()
				if err := update(v); err != nil {
					b.Fatalf("%s: update %d: %v", m.name, i+2, err)
				}
				times = append(times, time.Since(t0))
			}
			b.StopTimer()
			touch(b, filepath.Join(ctl, "end"))
			last := uint64(b.N + 1)
			// Let the readers see the last value, then stop them.
			time.Sleep(200 * time.Millisecond)
			touch(b, filepath.Join(ctl, "stop"))
			r := <-done
			if r.err != nil || r.exit != 0 {
				b.Fatalf("reader: exit %d, %v: %s", r.exit, r.err, r.stderr)
			}
			var views []readerStats
			sc := bufio.NewScanner(strings.NewReader(r.stdout))
			for sc.Scan() {
				var s readerStats
				if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
					b.Fatalf("reader output %q: %v", sc.Text(), err)
				}
				views = append(views, s)
			}
			if len(views) != 2 {
				b.Fatalf("reader output: want 2 lines, got %q", r.stdout)
			}
			upd := NewDist(times, "us")
			var rows []SwapResult
			for _, v := range views {
				row := SwapResult{Method: m.name, Used: m.usedBy, View: "file", Update: upd, Reads: v.Reads,
					Empty: v.Empty, Torn: v.Torn, Errors: v.Errors, Back: v.Backwards, Visible: v.LastSeq == last}
				if v.Path == "/d/s" {
					row.View = "dir"
				}
				if !row.Visible {
					row.Note = fmt.Sprintf("container still reads update %d of %d", v.LastSeq, last)
				}
				if v.FirstErr != "" {
					row.Note = strings.TrimSpace(row.Note + " first error: " + v.FirstErr)
				}
				rows = append(rows, row)
				b.ReportMetric(100*row.BadShare(), "bad-%-"+row.View)
			}
			b.ReportMetric(upd.Median, "us-median")
			b.ReportMetric(upd.P99, "us-p99")
			record(b, func(res *Results) {
				res.Swap = slices.DeleteFunc(res.Swap, func(s SwapResult) bool { return s.Method == m.name })
				res.Swap = append(res.Swap, rows...)
			})
		})
	}
}
