package bench

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
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
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot"
)

// stormUsers are the identities the storm guesses at (the admin too).
var stormUsers = []string{"admin", "u1", "u2", "u3", "u4"}

// stormAgbot starts `agbot init` and `agbot serve` as an operator does (argon2id at its
// default 19 MiB) with the users of stormUsers, and returns its URL, process and TLS pool.
func stormAgbot(b *testing.B) (string, *exec.Cmd, *x509.CertPool) {
	dir := b.TempDir()
	bin := binary(b, "agbot")
	if out, err := exec.Command(bin, "init", "--data-dir", dir, "--org", "storm", "--admin", "admin:adminpw").CombinedOutput(); err != nil {
		b.Fatalf("agbot init: %v: %s", err, out)
	}
	cmd := exec.Command(bin, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0")
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		pw.Close()
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if _, a, ok := strings.Cut(sc.Text(), " addr="); ok && strings.Contains(sc.Text(), "agbot serving") {
				addr <- strings.Fields(a)[0]
			}
		}
	}()
	var url string
	select {
	case a := <-addr:
		url = "https://" + a
	case <-time.After(time.Minute):
		b.Fatal("agbot serve did not say where it listens")
	}
	pem, err := os.ReadFile(filepath.Join(dir, agbot.CertFile))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	for _, u := range stormUsers[1:] {
		if code, err := stormCall(url, pool, "127.0.0.1", "storm/admin", "adminpw", "POST", "/org/storm/users/"+u, `{"password":"`+u+`-pw"}`); err != nil || code != 201 {
			b.Fatalf("create user %s: %d %v", u, code, err)
		}
	}
	return url, cmd, pool
}

// stormCall sends one request from the loopback address ip on a connection of its own.
func stormCall(url string, pool *x509.CertPool, ip, user, pw, method, path, body string) (int, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 30 * time.Second}
	c := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(method, url+path, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth(user, pw)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// BenchmarkPasswordStorm: one agbot process per case; each iteration fires 200 concurrent
// wrong passwords at it, each from its own loopback address (so that the per-address limit
// does not hide the rest), and waits for every answer: "known users" guesses at the admin
// and four users (the per-identity limit applies), "unknown ids" at 200 ids that do not
// exist, new ones each storm (only the bound on argon2id runs applies). Reported: the
// agbot's peak resident memory (VmHWM from /proc) before the first storm and after the last,
// and the answers per storm: 401 (checked, one argon2id run each), 429 (throttled unchecked),
// 503 (argon2id queue full).
//
//	go test -run '^$' -bench PasswordStorm -benchtime 3x ./bench/
func BenchmarkPasswordStorm(b *testing.B) {
	b.Run("known users", func(b *testing.B) {
		storm(b, func(it, i int) string { return stormUsers[i%len(stormUsers)] })
	})
	b.Run("unknown ids", func(b *testing.B) {
		storm(b, func(it, i int) string { return fmt.Sprintf("nobody-%d-%d", it, i) })
	})
}

func storm(b *testing.B, user func(it, i int) string) {
	const n = 200
	url, cmd, pool := stormAgbot(b)
	before, err := readProc(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	counts := map[int]int{}
	var mu sync.Mutex
	var failed []error
	b.ResetTimer()
	for it := range b.N {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				ip := fmt.Sprintf("127.%d.%d.%d", 10+it%200, i/250, i%250+1)
				code, err := stormCall(url, pool, ip, "storm/"+user(it, i), fmt.Sprintf("wrong-%d-%d", it, i), "GET", "/org/storm/users", "")
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = append(failed, err)
					return
				}
				counts[code]++
			})
		}
		wg.Wait()
	}
	b.StopTimer()
	after, err := readProc(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	if len(failed) > 0 {
		b.Errorf("%d requests failed, first: %v", len(failed), failed[0])
	}
	if code, err := stormCall(url, pool, "127.0.0.1", "storm/admin", "adminpw", "GET", "/org/storm/users", ""); err != nil || code != 200 {
		b.Errorf("the admin after the storm: %d %v", code, err)
	}
	per := func(code int) float64 { return float64(counts[code]) / float64(b.N) }
	b.ReportMetric(float64(before.HWM)/1024, "MiB-peak-before")
	b.ReportMetric(float64(after.HWM)/1024, "MiB-peak-after")
	b.ReportMetric(per(401), "checked/storm")
	b.ReportMetric(per(429), "throttled/storm")
	b.ReportMetric(per(503), "busy/storm")
	b.Logf("%d storms of %d: agbot peak RSS %d MiB before, %d MiB after; answers %v", b.N, n, before.HWM>>10, after.HWM>>10, counts)
}
