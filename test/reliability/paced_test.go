package reliability

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edge-secrets/anax-agent/test/e2e"
	"github.com/edge-secrets/anax-agent/test/leakscan"
)

// paced is the outcome of pacedWrites.
type paced struct {
	asked     int           // ticks: writes asked for
	sent      int           // writes the agbot acknowledged
	failed    int           // writes the agbot refused or that did not reach it
	missed    int           // writes dropped because every writer was busy and the queue full
	firstErr  error         // the first failure
	elapsed   time.Duration // from the first tick to the last acknowledgement
	latencies []time.Duration
	written   map[string]bool // every file content written (whether or not acknowledged)
}

// rate is the write rate achieved: acknowledged writes per second of the whole stream,
// including the time the last writes took to drain.
func (p paced) rate() float64 {
	if p.elapsed <= 0 {
		return 0
	}
	return float64(p.sent) / p.elapsed.Seconds()
}

func (p paced) String() string {
	q := func(f float64) time.Duration {
		if len(p.latencies) == 0 {
			return 0
		}
		return p.latencies[min(len(p.latencies)-1, int(f*float64(len(p.latencies))))].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("%d writes asked, %d acknowledged, %d failed, %d missed (writers busy) in %v: %.1f/s; agbot write latency p50 %v, p99 %v, max %v",
		p.asked, p.sent, p.failed, p.missed, p.elapsed.Round(time.Millisecond), p.rate(), q(0.5), q(0.99), q(1))
}

// pacedWrites writes a new value of secret name rate times a second for dur. A ticker feeds a
// few concurrent writers through a queue of one second's writes, so the rate does not depend
// on one write's latency (the agbot's answer under load); a write that finds the queue full is
// missed. Writes in flight at once may be committed by the agbot in any order.
func (s *Scenario) pacedWrites(c *leakscan.Canaries, name string, rate int, dur time.Duration) paced {
	writers := max(4, rate/5)
	p := paced{written: map[string]bool{}}
	var mu sync.Mutex
	jobs := make(chan string, rate)
	var wg sync.WaitGroup
	var lastAck time.Time
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := range jobs {
				t0 := time.Now()
				err := s.put(name, "dbkey", v)
				t1 := time.Now()
				mu.Lock()
				if err != nil {
					p.failed++
					if p.firstErr == nil {
						p.firstErr = err
					}
				} else {
					p.sent++
					p.latencies = append(p.latencies, t1.Sub(t0))
					lastAck = t1
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	total := int(dur.Seconds() * float64(rate))
	for p.asked < total {
		<-tick.C
		// Every write due by now: a ticker drops ticks when this goroutine runs late (a loaded
		// machine), which would lower the rate asked.
		due := min(total, int(time.Since(start).Seconds()*float64(rate)))
		for ; p.asked < due; p.asked++ {
			v := c.Next(name)
			mu.Lock()
			p.written[File("dbkey", v, "")] = true // before the write: a reader may see it at once
			mu.Unlock()
			select {
			case jobs <- v:
			default:
				p.missed++
			}
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	p.elapsed = max(lastAck.Sub(start), dur)
	slices.Sort(p.latencies)
	return p
}

// cpuTime is the CPU time (user and system) process pid has used, from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count fields after its closing parenthesis.
	_, rest, ok := strings.Cut(string(raw), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime (fields 14 and 15)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100, nil // USER_HZ is 100 in Linux's ABI
}

// cpuMeter measures the CPU time of a few processes over a span, as a share of one core.
type cpuMeter struct {
	names []string
	pids  []int
	start []time.Duration
	at    time.Time
}

// meterCPU starts measuring; a pid of 0 (not found) is reported as such.
func meterCPU(names []string, pids []int) *cpuMeter {
	m := &cpuMeter{names: names, pids: pids, start: make([]time.Duration, len(pids)), at: time.Now()}
	for i, pid := range pids {
		if pid != 0 {
			m.start[i], _ = cpuTime(pid)
		}
	}
	return m
}

// String says each process's share of one core since meterCPU, and the load average.
func (m *cpuMeter) String() string {
	span := time.Since(m.at)
	var parts []string
	for i, pid := range m.pids {
		now, err := cpuTime(pid)
		if pid == 0 || err != nil {
			parts = append(parts, m.names[i]+" not measured")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.0f%%", m.names[i], 100*(now-m.start[i]).Seconds()/span.Seconds()))
	}
	load, _ := os.ReadFile("/proc/loadavg")
	avg := strings.Fields(string(load))
	return fmt.Sprintf("CPU over %v (%% of one core): %s; load average %s", span.Round(time.Second), strings.Join(parts, ", "), strings.Join(avg[:min(3, len(avg))], " "))
}

// hammerPID finds the host PID of the hammer reading inside container id (0: not found).
func hammerPID(s *Scenario, id string) int {
	for range 50 {
		top, err := s.Docker.ContainerTop(s.Ctx, id, nil)
		if err != nil {
			return 0
		}
		pidCol, cmdCol := slices.Index(top.Titles, "PID"), slices.Index(top.Titles, "CMD")
		for _, p := range top.Processes {
			if pidCol >= 0 && cmdCol >= 0 && strings.Contains(p[cmdCol], "hammer") {
				pid, _ := strconv.Atoi(p[pidCol])
				return pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0
}

// histogram is a Prometheus histogram as the agent exports it.
type histogram struct {
	count, sum float64
	buckets    map[float64]float64 // upper bound -> cumulative count
}

// The agent's histograms TestLoad reports.
const (
	applyHist = "anax_agent_update_apply_seconds"
	swapHist  = "anax_agent_store_swap_seconds"
)

// scrapeHistograms reads the histograms names from one read of the agent's /metrics.
func scrapeHistograms(a *e2e.Agent, names ...string) ([]histogram, error) {
	resp, err := http.Get("http://" + a.Config.MetricsListen + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out := make([]histogram, len(names))
	for i, name := range names {
		if out[i] = parseHistogram(lines, name); len(out[i].buckets) == 0 {
			return nil, fmt.Errorf("metric %s not exported", name)
		}
	}
	return out, nil
}

// parseHistogram picks histogram name out of the text exposition's lines.
func parseHistogram(lines []string, name string) histogram {
	h := histogram{buckets: map[float64]float64{}}
	for _, line := range lines {
		key, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch {
		case key == name+"_count":
			h.count = v
		case key == name+"_sum":
			h.sum = v
		case strings.HasPrefix(key, name+`_bucket{le="`):
			le := strings.TrimSuffix(strings.TrimPrefix(key, name+`_bucket{le="`), `"}`)
			if bound, err := strconv.ParseFloat(le, 64); err == nil { // "+Inf" parses as +Inf
				h.buckets[bound] = v
			}
		}
	}
	return h
}

// minus is what was observed between o and h.
func (h histogram) minus(o histogram) histogram {
	d := histogram{count: h.count - o.count, sum: h.sum - o.sum, buckets: map[float64]float64{}}
	for b, n := range h.buckets {
		d.buckets[b] = n - o.buckets[b]
	}
	return d
}

// quantile returns the upper bound of the bucket holding quantile q (an upper estimate).
func (h histogram) quantile(q float64) float64 {
	bounds := make([]float64, 0, len(h.buckets))
	for b := range h.buckets {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	for _, b := range bounds {
		if h.buckets[b] >= q*h.count {
			return b
		}
	}
	return math.Inf(1)
}

// durations says how long the observations took: mean, and the bucket bounds of p50 and p99.
func (h histogram) durations() string {
	if h.count == 0 {
		return "not observed"
	}
	ms := func(s float64) string { return strconv.FormatFloat(1000*s, 'f', 2, 64) + " ms" }
	return fmt.Sprintf("%s on average, p50 <= %s, p99 <= %s (bucket bounds)", ms(h.sum/h.count), ms(h.quantile(0.5)), ms(h.quantile(0.99)))
}
