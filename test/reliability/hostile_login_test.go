package reliability

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/api"
	"github.com/edge-secrets/anax-agent/test/e2e"
)

// loginEnv is a real agbot process (agbot init, agbot serve: argon2id at its default 19 MiB)
// with users, and clients that can speak from any loopback address.
type loginEnv struct {
	t    *testing.T
	b    *e2e.Agbot
	pool *x509.CertPool
}

var loginUsers = []string{"bob", "carol", "dave", "erin"}

func newLoginEnv(t *testing.T) *loginEnv {
	bin := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := e2e.NewAgbot(ctx, bin, t.TempDir(), "myorg", "admin", "adminpw", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("agbot did not stop cleanly: %v", err)
		}
	})
	pem, err := os.ReadFile(b.CA)
	if err != nil {
		t.Fatal(err)
	}
	e := &loginEnv{t: t, b: b, pool: x509.NewCertPool()}
	e.pool.AppendCertsFromPEM(pem)
	for _, u := range loginUsers {
		e.want("127.0.0.1", admin, "POST", "/org/myorg/users/"+u, `{"password":"`+u+`pw"}`, 201)
	}
	return e
}

// do sends one request as auth from the loopback address ip (all of 127.0.0.0/8 is local
// on Linux: each ip is another client to the agbot).
func (e *loginEnv) do(ip, auth, method, path, body string) (int, http.Header, []byte, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 30 * time.Second}
	c := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: e.pool}}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(method, e.b.URL+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	u, p, _ := strings.Cut(auth, ":")
	req.SetBasicAuth(u, p)
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw, nil
}

func (e *loginEnv) want(ip, auth, method, path, body string, want int) (http.Header, []byte) {
	e.t.Helper()
	code, hdr, raw, err := e.do(ip, auth, method, path, body)
	if err != nil {
		e.t.Fatalf("%s %s as %s from %s: %v", method, path, auth, ip, err)
	}
	if code != want {
		e.t.Fatalf("%s %s as %s from %s = %d %s, want %d", method, path, auth, ip, code, trim(raw), want)
	}
	return hdr, raw
}

// hwmKiB is the agbot process's peak resident memory (VmHWM).
func (e *loginEnv) hwmKiB() int64 {
	e.t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", e.b.Proc().Pid()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				e.t.Fatal(err)
			}
			return n
		}
	}
	e.t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestHostileLogins: password guessing against a real agbot process. Past the free
// allowance (api.DefaultIdentityLimit, api.DefaultAddressLimit) an identity or an address
// is answered 429 with Retry-After and the refusal's reason, the right password included,
// while other identities, other addresses, and the identity where it logged in before are
// served; a storm of concurrent wrong passwords leaves the agbot's peak memory bounded
// (every argon2id run holds 19 MiB: the old agbot ran them all at once).
func TestHostileLogins(t *testing.T) {
	e := newLoginEnv(t)
	const path = "/org/myorg/users/bob"
	e.want("127.0.0.1", bob, "GET", path, "", 200) // bob's usual address
	check429 := func(t *testing.T, ip, auth, which string) {
		t.Helper()
		code, hdr, raw, err := e.do(ip, auth, "GET", path, "")
		if err != nil || code != 429 {
			t.Fatalf("%s from %s = %d %s (%v), want 429", auth, ip, code, trim(raw), err)
		}
		if s, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("Retry-After %q, want whole seconds", hdr.Get("Retry-After"))
		}
		var body api.Error
		if err := json.Unmarshal(raw, &body); err != nil || body.Code != 429 || !strings.Contains(body.Error, which) {
			t.Errorf("429 body %s does not name %q", trim(raw), which)
		}
	}
	t.Run("one identity from many addresses", func(t *testing.T) {
		for i := range api.DefaultIdentityLimit.Free + 1 {
			e.want(fmt.Sprintf("127.0.1.%d", i+1), "myorg/bob:guess"+strconv.Itoa(i), "GET", path, "", 401)
		}
		check429(t, "127.0.2.1", bob, "myorg/bob")
		e.want("127.0.2.1", carol, "GET", "/org/myorg/users/carol", "", 200)
		e.want("127.0.0.1", bob, "GET", path, "", 200)
	})
	t.Run("one address, many identities", func(t *testing.T) {
		for i := range api.DefaultAddressLimit.Free + 1 {
			e.want("127.0.3.1", fmt.Sprintf("myorg/nobody%02d:guess", i), "GET", path, "", 401)
		}
		check429(t, "127.0.3.1", carol, "address")
		e.want("127.0.3.2", carol, "GET", "/org/myorg/users/carol", "", 200)
	})
	t.Run("storm of concurrent wrong passwords", func(t *testing.T) {
		before := e.hwmKiB()
		counts, errs := e.storm(200, 10)
		after := e.hwmKiB()
		t.Logf("agbot peak RSS %d MiB before, %d MiB after 200 concurrent wrong passwords; answers %v", before>>10, after>>10, counts)
		if len(errs) > 0 {
			t.Errorf("%d requests failed, first: %v", len(errs), errs[0])
		}
		if counts[401] == 0 {
			t.Errorf("no guess was checked at all: %v", counts)
		}
		if grew := (after - before) >> 10; grew > 150 {
			t.Errorf("the agbot's peak memory grew by %d MiB, want at most 150 (argon2id runs bounded)", grew)
		}
		e.want("127.0.0.1", admin, "GET", "/org/myorg/users", "", 200)
	})
}

// storm sends n concurrent wrong passwords for the known users and the admin, each from its
// own address in 127.0.<base..>.x, and counts the answers.
func (e *loginEnv) storm(n, base int) (map[int]int, []error) {
	ids := append([]string{"admin"}, loginUsers...)
	var mu sync.Mutex
	counts := map[int]int{}
	var errs []error
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ip := fmt.Sprintf("127.0.%d.%d", base+i/250, i%250+1)
			code, _, _, err := e.do(ip, "myorg/"+ids[i%len(ids)]+":wrong"+strconv.Itoa(i), "GET", "/org/myorg/users", "")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			counts[code]++
		})
	}
	wg.Wait()
	return counts, errs
}
