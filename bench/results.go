package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Results is bench/results.json: every figure of one `make bench` run and the machine it ran
// on. Each section is written by its benchmark; a later run of one benchmark replaces its
// entries and keeps the others.
type Results struct {
	Date      string            `json:"date"`
	Machine   Machine           `json:"machine"`
	Swap      []SwapResult      `json:"swap,omitempty"`
	EndToEnd  []LatencyResult   `json:"endToEnd,omitempty"`
	Proposal  []ProposalResult  `json:"proposal,omitempty"`
	Fanout    []FanoutResult    `json:"fanout,omitempty"`
	Footprint []FootprintResult `json:"footprint,omitempty"`
	Scale     []ScaleResult     `json:"scale,omitempty"`
	Binaries  []BinarySize      `json:"binaries,omitempty"`
}

// Machine says where the figures were measured.
type Machine struct {
	Kernel  string `json:"kernel"`
	CPU     string `json:"cpu"`
	Cores   int    `json:"cores"`
	MemMiB  int    `json:"memMiB"`
	Docker  string `json:"docker,omitempty"`
	Go      string `json:"go"`
	Comment string `json:"comment,omitempty"`
}

// Dist summarises a latency distribution. Quantiles holds the 0th..100th percentiles (101
// points) for the CDF chart.
type Dist struct {
	N         int       `json:"n"`
	Unit      string    `json:"unit"` // "us" or "ms"
	Median    float64   `json:"median"`
	P90       float64   `json:"p90"`
	P99       float64   `json:"p99"`
	Max       float64   `json:"max"`
	Quantiles []float64 `json:"quantiles,omitempty"`
}

// SwapResult is one way of replacing a secret file on the node, read through one kind of
// container mount.
type SwapResult struct {
	Method  string `json:"method"`  // e.g. "mount-swap"
	Used    string `json:"usedBy"`  // who does it this way
	View    string `json:"view"`    // "file" (single-file bind at /<name>) or "dir" (directory bind)
	Update  Dist   `json:"update"`  // time of one update on the host, µs
	Reads   int64  `json:"reads"`   // reads by the concurrent readers in the container
	Empty   int64  `json:"empty"`   // reads that returned an empty file
	Torn    int64  `json:"torn"`    // reads that returned neither an old nor the new value whole
	Errors  int64  `json:"errors"`  // reads that failed (e.g. the file vanished)
	Back    int64  `json:"back"`    // a reader saw an older value after a newer one
	Visible bool   `json:"visible"` // the last value written reached the container through this view
	Note    string `json:"note,omitempty"`
}

// BadShare is the share of empty, torn or failed reads.
func (r SwapResult) BadShare() float64 {
	if r.Reads == 0 {
		return 0
	}
	return float64(r.Empty+r.Torn+r.Errors) / float64(r.Reads)
}

// LatencyResult is an end-to-end latency: a secret written in the manager until the new value
// is read inside the running container.
type LatencyResult struct {
	Name    string `json:"name"` // e.g. "embedded", "openbao"
	Latency Dist   `json:"latency"`
	Note    string `json:"note,omitempty"`
}

// ProposalResult splits proposal → container running.
type ProposalResult struct {
	Name     string `json:"name"`
	Total    Dist   `json:"total"`    // policy published → container running, ms
	Agbot    Dist   `json:"agbot"`    // published → the agbot's agreement record created, ms
	Delivery Dist   `json:"delivery"` // → the agent starts handling the proposal, ms
	Agent    Dist   `json:"agent"`    // → Docker has created the container, ms
	Docker   Dist   `json:"docker"`   // container created → started, ms
	Note     string `json:"note,omitempty"`
}

// FanoutResult is one agbot (or a fleet of agbots on one database) pushing one org-level
// update to many nodes.
type FanoutResult struct {
	Nodes           int         `json:"nodes"`
	Store           string      `json:"store,omitempty"`          // bbolt (also when empty), postgres, postgres-2agbots
	Agbots          int         `json:"agbots,omitempty"`         // agbot processes (0: one); the CPU and RSS figures are their sums
	ToLastAck       Dist        `json:"toLastAck"`                // secret written → last node's acknowledgement, ms
	AgbotCPU        float64     `json:"agbotCpuS"`                // agbot process CPU seconds per fan-out (user+system)
	AgbotCPUPerNode float64     `json:"agbotCpuMsPerNode"`        // the same, ms per node per update
	DBCPUPerNode    float64     `json:"dbCpuMsPerNode,omitempty"` // the PostgreSQL server's processes, ms per node per update
	AgbotRSSMiB     float64     `json:"agbotRssMiB"`              // agbot resident set after the fan-outs
	AgbotHWMMiB     float64     `json:"agbotHwmMiB"`              // agbot peak resident set, the set-up's herd included
	FanoutHWMMiB    float64     `json:"fanoutHwmMiB,omitempty"`   // agbot peak resident set during the fan-outs
	RestedRSSMiB    float64     `json:"restedRssMiB,omitempty"`   // agbot resident set 40 s after the last fan-out
	RestedFileMiB   float64     `json:"restedFileMiB,omitempty"`  // the file pages in it (bbolt's mapped state file)
	IdleRSSMiB      float64     `json:"idleRssMiB"`               // agbot resident set, every node long-polling, idle
	IdleKiBPerPoll  float64     `json:"idleKiBPerPoll"`           // (idle RSS − RSS before any node connected) / nodes
	NodesCPU        float64     `json:"nodesCpuS"`                // CPU seconds of the simulated nodes per fan-out (same machine)
	Kill            *KillResult `json:"kill,omitempty"`
	Note            string      `json:"note,omitempty"`
}

// StoreName is where the agbots kept their state (results from before the store was
// recorded were on bbolt).
func (f FanoutResult) StoreName() string {
	if f.Store == "" {
		return "bbolt"
	}
	return f.Store
}

// KillResult is one fan-out interrupted by a kill -9 of the agbot, which restarts on its state.
type KillResult struct {
	AckedBefore int64   `json:"ackedBefore"` // nodes that had acknowledged when it was killed
	Restart     float64 `json:"restartS"`    // kill → every node acknowledged, s
	Total       float64 `json:"totalS"`      // secret written → every node acknowledged, s
	Errors      int64   `json:"errors"`      // node errors retried meanwhile (connections cut)
}

// FootprintResult is the agent's memory with a number of services.
type FootprintResult struct {
	Services int     `json:"services"`
	RSSMiB   float64 `json:"rssMiB"`
	Note     string  `json:"note,omitempty"`
}

// ScaleResult is one node with a number of services (one container and one agreement
// each): updates to one of them, an org secret every one of them binds, memory and restart.
type ScaleResult struct {
	Services       int     `json:"services"`
	Apply          Dist    `json:"apply"`          // the agent's apply time of one update to one service, ms
	Swap           Dist    `json:"swap"`           // secretfs's swap of that service's store (its container running), µs
	Read           Dist    `json:"read"`           // agbot write → new value read in that service's container, ms
	OrgAll         Dist    `json:"orgAll"`         // org secret bound by every service written → read in every container, ms
	OrgServices    int     `json:"orgServices"`    // services binding that org secret
	RSSMiB         float64 `json:"rssMiB"`         // agent resident set
	RestartReadyMS float64 `json:"restartReadyMs"` // agent started again → local API answers (every store checked), ms
	Restarted      int     `json:"restarted"`      // containers restarted meanwhile (must be 0)
	Note           string  `json:"note,omitempty"`
}

// BinarySize is one static binary of `make cross`.
type BinarySize struct {
	Target string `json:"target"` // linux-amd64, linux-arm64, linux-armv7
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
}

// NewDist summarises samples, converted to unit ("us" or "ms").
func NewDist(samples []time.Duration, unit string) Dist {
	d := Dist{N: len(samples), Unit: unit}
	if len(samples) == 0 {
		return d
	}
	div := float64(time.Microsecond)
	if unit == "ms" {
		div = float64(time.Millisecond)
	}
	v := make([]float64, len(samples))
	for i, s := range samples {
		v[i] = float64(s) / div
	}
	slices.Sort(v)
	d.Median, d.P90, d.P99, d.Max = quantile(v, 0.5), quantile(v, 0.9), quantile(v, 0.99), v[len(v)-1]
	d.Quantiles = make([]float64, 101)
	for i := range d.Quantiles {
		d.Quantiles[i] = round3(quantile(v, float64(i)/100))
	}
	d.Median, d.P90, d.P99, d.Max = round3(d.Median), round3(d.P90), round3(d.P99), round3(d.Max)
	return d
}

// quantile of sorted v by linear interpolation between closest ranks.
func quantile(v []float64, q float64) float64 {
	if len(v) == 1 {
		return v[0]
	}
	pos := q * float64(len(v)-1)
	i := int(pos)
	if i >= len(v)-1 {
		return v[len(v)-1]
	}
	return v[i] + (v[i+1]-v[i])*(pos-float64(i))
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// Load reads a results file; a missing file gives empty results.
func Load(path string) (*Results, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Results{}, nil
	}
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// Save writes r (indented, stable) to path, stamping the date and machine.
func (r *Results) Save(path string) error {
	r.Date = time.Now().UTC().Format(time.RFC3339)
	r.Machine = ThisMachine(r.Machine.Comment)
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Update loads path, lets fn change the results and saves them: each benchmark replaces its
// own section. An empty path does nothing.
func Update(path string, fn func(*Results)) error {
	if path == "" {
		return nil
	}
	r, err := Load(path)
	if err != nil {
		return err
	}
	fn(r)
	return r.Save(path)
}

// ThisMachine describes the machine the process runs on.
func ThisMachine(comment string) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Comment: comment}
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(raw))
	}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(raw), "MemTotal: %d kB", &kb); err == nil {
			m.MemMiB = kb / 1024
		}
	}
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").Output(); err == nil {
		m.Docker = string(bytes.TrimSpace(out))
	}
	return m
}

// CrossSizes lists the binaries of `make cross` under dir (dir/linux-<arch>/<name>).
func CrossSizes(dir string) []BinarySize {
	var out []BinarySize
	for _, target := range []string{"linux-amd64", "linux-arm64", "linux-armv7"} {
		ents, err := os.ReadDir(filepath.Join(dir, target))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
				out = append(out, BinarySize{Target: target, Name: e.Name(), Bytes: info.Size()})
			}
		}
	}
	return out
}
