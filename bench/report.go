package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// swapOrder is the order of the swap methods in the table: this project first.
var swapOrder = []string{"mount-swap", "in-place rewrite", "temp + rename", "..data symlink swap"}

// Table writes the results as Markdown tables, the text the README carries.
func (r *Results) Table(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "Measured %s on %s, %d cores (%s), %d MiB, kernel %s, Docker %s, %s.\n",
		dateOnly(r.Date), orDash(m.CPU), m.Cores, orDash(m.Comment), m.MemMiB, orDash(m.Kernel), orDash(m.Docker), m.Go)
	r.swapTable(w)
	r.latencyTable(w)
	r.proposalTable(w)
	r.fanoutTable(w)
	r.footprintTable(w)
	r.scaleTable(w)
}

func (r *Results) swapTable(w io.Writer) {
	if len(r.Swap) == 0 {
		return
	}
	type row struct{ file, dir *SwapResult }
	rows := map[string]*row{}
	var names []string
	for i := range r.Swap {
		s := &r.Swap[i]
		if rows[s.Method] == nil {
			rows[s.Method] = &row{}
			names = append(names, s.Method)
		}
		if s.View == "dir" {
			rows[s.Method].dir = s
		} else {
			rows[s.Method].file = s
		}
	}
	slices.SortStableFunc(names, func(a, b string) int { return order(a) - order(b) })
	var base float64
	if x := rows["mount-swap"]; x != nil && x.file != nil {
		base = x.file.Update.Median
	}
	any := rows[names[0]].file
	if any == nil {
		any = rows[names[0]].dir
	}
	fmt.Fprintf(w, "\n**Node-side swap**: %d updates of 16 B..64 KiB back to back, read meanwhile by 2+2 goroutines in a container "+
		"through a single-file mount at /<name> and a directory mount (`go test -bench SwapMethods ./bench`).\n\n", any.Update.N)
	fmt.Fprintln(w, "| method | used by | µs/update median | p99 | median × mount-swap | bad reads¹, single-file mount | bad reads¹, directory mount | new value visible through a single-file mount |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, n := range names {
		x := rows[n]
		s := x.file
		if s == nil {
			s = x.dir
		}
		ratio := "-"
		if base > 0 {
			ratio = fmt.Sprintf("%.2f", s.Update.Median/base)
		}
		vis := "-"
		if x.file != nil {
			vis = yesNo(x.file.Visible)
			if !x.file.Visible {
				vis = "**no**: the container keeps the first value"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", s.Method, s.Used, num(s.Update.Median), num(s.Update.P99), ratio,
			share(x.file), share(x.dir), vis)
	}
	fmt.Fprintln(w, "\n¹ empty, torn (neither the old nor the new value whole) or failed reads, of all reads made while the updates ran.")
}

func (r *Results) latencyTable(w io.Writer) {
	if len(r.EndToEnd) == 0 {
		return
	}
	fmt.Fprintf(w, "\n**End to end**: `hzn sm secret add -O` of a new value until the running container reads it "+
		"(`go test -bench EndToEnd ./bench`). Target p99 < 50 ms with the embedded manager.\n\n")
	fmt.Fprintln(w, "| secrets manager | updates | median ms | p90 ms | p99 ms | max ms |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: |")
	for _, e := range r.EndToEnd {
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s |\n", e.Name, e.Latency.N, num(e.Latency.Median), num(e.Latency.P90), num(e.Latency.P99), num(e.Latency.Max))
	}
	for _, e := range r.EndToEnd {
		if e.Note != "" {
			fmt.Fprintf(w, "\n%s: %s.", e.Name, e.Note)
		}
	}
	fmt.Fprintln(w)
}

func (r *Results) proposalTable(w io.Writer) {
	if len(r.Proposal) == 0 {
		return
	}
	fmt.Fprintf(w, "\n**Proposal → container running**: `hzn exchange deployment addpolicy` for a registered idle node until its container runs, "+
		"split by the timestamps of the agbot's agreement record, the agent's acceptance and Docker (`go test -bench Proposal ./bench`); median (p99) ms.\n\n")
	fmt.Fprintln(w, "| case | runs | total | agbot (incl. hzn) | delivery (long-poll) | agent | Docker create→start |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, p := range r.Proposal {
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s |\n", p.Name, p.Total.N, mp(p.Total), mp(p.Agbot), mp(p.Delivery), mp(p.Agent), mp(p.Docker))
	}
}

func (r *Results) fanoutTable(w io.Writer) {
	if len(r.Fanout) == 0 {
		return
	}
	fmt.Fprintf(w, "\n**Fan-out**: one agbot process (`agbot serve`, HTTPS on loopback) pushes one org-level secret change to every "+
		"simulated node, each long-polling on its own TLS connection with its own keys from the benchmark process on the same cores; "+
		"every node must acknowledge every update, also across a kill -9 of the agbot in the middle of one more fan-out "+
		"(`go test -bench Fanout ./bench`; `ANAX_FANOUT_NODES=100000` for other fleet sizes). "+
		"Store: the agbot's bbolt file, or PostgreSQL (a local server started by the benchmark) with one agbot or two "+
		"(the nodes alternate between both addresses; the standby forwards to the lease holder; CPU and RSS are the two processes' sums; "+
		"the kill -9 hits the lease holder). `ANAX_FANOUT_STORES=bbolt,postgres,postgres-2agbots` picks stores. "+
		"Targets at 10,000 nodes: last ack < 5 s, agbot CPU < 0.25 ms per node per update, agbot RSS < 300 MiB; "+
		"100,000 idle nodes < 2 GiB.\n\n")
	slices.SortStableFunc(r.Fanout, func(a, b FanoutResult) int {
		if a.Nodes != b.Nodes {
			return a.Nodes - b.Nodes
		}
		return fanoutStoreRank(a.StoreName()) - fanoutStoreRank(b.StoreName())
	})
	fmt.Fprintln(w, "| nodes | store | fan-outs | to last ack, median s | max s | agbot CPU ms per node per update | PostgreSQL CPU ms per node per update | agbot RSS MiB: idle, rested (its file pages), peak in fan-outs (with the set-up) | "+
		"agbot KiB per idle long-poll | nodes' CPU s per fan-out | kill -9 mid fan-out: acked before, all acked after s |")
	fmt.Fprintln(w, "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, f := range r.Fanout {
		kill := "-"
		if k := f.Kill; k != nil {
			kill = fmt.Sprintf("%d, %s", k.AckedBefore, num(k.Restart))
		}
		db := "-"
		if f.DBCPUPerNode > 0 {
			db = num(f.DBCPUPerNode)
		}
		rested, inFanouts := "-", "-"
		if f.RestedRSSMiB > 0 {
			rested, inFanouts = num(f.RestedRSSMiB)+" ("+num(f.RestedFileMiB)+")", num(f.FanoutHWMMiB)
		}
		fmt.Fprintf(w, "| %d | %s | %d | %s | %s | %s | %s | %s, %s, %s (%s) | %s | %s | %s |\n", f.Nodes, f.StoreName(), f.ToLastAck.N, num(f.ToLastAck.Median/1000),
			num(f.ToLastAck.Max/1000), num(f.AgbotCPUPerNode), db, num(f.IdleRSSMiB), rested, inFanouts, num(f.AgbotHWMMiB), num(f.IdleKiBPerPoll), num(f.NodesCPU), kill)
	}
}

// fanoutStoreRank orders the stores of the fan-out table: bbolt first.
func fanoutStoreRank(s string) int {
	return map[string]int{"bbolt": 0, "postgres": 1, "postgres-2agbots": 2}[s]
}

func (r *Results) footprintTable(w io.Writer) {
	if len(r.Binaries) > 0 {
		targets, names := []string{}, []string{}
		size := map[string]int64{}
		for _, b := range r.Binaries {
			if !slices.Contains(targets, b.Target) {
				targets = append(targets, b.Target)
			}
			if !slices.Contains(names, b.Name) {
				names = append(names, b.Name)
			}
			size[b.Target+"/"+b.Name] = b.Bytes
		}
		fmt.Fprintf(w, "\n**Binary sizes** (`make cross`: static, stripped), MiB.\n\n")
		fmt.Fprintf(w, "| binary | %s |\n|---|%s\n", strings.Join(targets, " | "), strings.Repeat(" ---: |", len(targets)))
		for _, n := range names {
			cells := []string{}
			for _, t := range targets {
				cells = append(cells, fmt.Sprintf("%.1f", float64(size[t+"/"+n])/(1<<20)))
			}
			fmt.Fprintf(w, "| %s | %s |\n", n, strings.Join(cells, " | "))
		}
	}
	if len(r.Footprint) > 0 {
		fmt.Fprintf(w, "\n**Agent memory** (`go test -bench Footprint ./bench`). Target < 25 MB with 100 services.\n\n")
		fmt.Fprintln(w, "| services | agent RSS MiB |")
		fmt.Fprintln(w, "| ---: | ---: |")
		for _, f := range r.Footprint {
			fmt.Fprintf(w, "| %d | %s |\n", f.Services, num(f.RSSMiB))
		}
	}
}

func (r *Results) scaleTable(w io.Writer) {
	if len(r.Scale) == 0 {
		return
	}
	base := r.Scale[0]
	fmt.Fprintf(w, "\n**Node scale**: one node with N services (one container and one agreement each) under one agent; "+
		"%d updates of one service's secret through the agbot's API, one at a time; an org secret every service binds changed %d times "+
		"(`go test -bench NodeScale ./bench`). Apply and swap from the agent's histograms (exact per update), read: agbot write → "+
		"new value read in the container; ratio: read median ÷ the median with %d service(s). Targets with 1,000 services: "+
		"apply p99 < 10 ms, read p99 < 20 ms and within 1.5× of the median alone, swap median < 100 µs, all containers within 2 s, "+
		"RSS < 40 MiB, restart ready < 5 s with no container restarted.\n\n", base.Read.N, base.OrgAll.N, base.Services)
	fmt.Fprintln(w, "| services | apply ms p50 (p99) | read ms p50 (p99) | read median ratio | swap µs p50 (p99) | org secret → every container, ms median (max) | agent RSS MiB | restart → ready ms | containers restarted |")
	fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, s := range r.Scale {
		ratio := "-"
		if base.Read.Median > 0 {
			ratio = fmt.Sprintf("%.2f", s.Read.Median/base.Read.Median)
		}
		org := "-"
		if s.OrgAll.N > 0 {
			org = fmt.Sprintf("%s (%s)", num(s.OrgAll.Median), num(s.OrgAll.Max))
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %d |\n", s.Services, mp(s.Apply), mp(s.Read), ratio, mp(s.Swap), org,
			num(s.RSSMiB), num(s.RestartReadyMS), s.Restarted)
	}
}

func order(method string) int {
	if i := slices.Index(swapOrder, method); i >= 0 {
		return i
	}
	return len(swapOrder)
}

func share(s *SwapResult) string {
	if s == nil {
		return "-"
	}
	bad := s.Empty + s.Torn + s.Errors
	switch {
	case s.Reads == 0:
		return "no reads"
	case bad == 0:
		return fmt.Sprintf("0 of %d", s.Reads)
	}
	return fmt.Sprintf("%s%% (%d of %d)", num(100*s.BadShare()), bad, s.Reads)
}

func mp(d Dist) string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%s (%s)", num(d.Median), num(d.P99))
}

// num prints 3 significant digits, without exponent.
func num(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	case x >= 1:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.3f", x)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dateOnly(s string) string {
	if d, _, ok := strings.Cut(s, "T"); ok {
		return d
	}
	return s
}
