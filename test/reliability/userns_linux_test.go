package reliability

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/test/e2e"
	"github.com/edge-secrets/anax-agent/test/leakscan"
)

// TestUsernsRemap runs the agent against a private dockerd with --userns-remap=default (dockerd
// creates the dockremap user and its /etc/subuid range on first use). The service runs as
// 1000:1000 in its image, which is the host uid subuid_start+1000: every secret file on the
// host is owned by that shifted uid with mode 0400, the container's user reads it as its own
// (uid 1000, 0400), and a later update is read live.
func TestUsernsRemap(t *testing.T) {
	c := leakscan.New("rel-userns")
	s, d := privateScenario(t, "userns", 10*time.Minute, "--userns-remap=default")
	base, err := subIDStart("/etc/subuid", "dockremap")
	if err != nil {
		t.Fatal(err)
	}
	a, ctr, err := s.Single(c.Next("db"), c.Next("token"), onDaemon(d))
	if err != nil {
		t.Fatal(err)
	}
	v := s.warmUp(t, c, ctr)
	shifted := uint32(base + 1000)
	n := 0
	err = filepath.WalkDir(a.Config.SecretsRoot, func(path string, de fs.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return err
		}
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		n++
		if st.Uid != shifted || fi.Mode().Perm() != 0o400 {
			t.Errorf("%s on the host: uid %d mode %o, want the shifted uid %d and 0400", path, st.Uid, fi.Mode().Perm(), shifted)
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("walking the secrets root: %d files (%v), want the service's files", n, err)
	}
	t.Logf("%d secret files on the host, owned by %d (dockremap's range starts at %d)", n, shifted, base)
	stats, err := e2e.Stat(s.Ctx, s.Docker, ctr, "/db_password", "/api_token")
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 2 {
		t.Fatalf("the reader stats %d of 2 files: %v", len(stats), stats)
	}
	for path, st := range stats {
		if st.UID != 1000 || st.Mode != "0400" {
			t.Errorf("%s in the container: uid %d mode %s, want 1000 and 0400 (the container's user)", path, st.UID, st.Mode)
		}
	}
	if err := s.waitRead(ctr, "/db_password", File("dbkey", v, ""), time.Minute); err != nil {
		t.Fatal(err)
	}
	later := c.Next("db")
	if err := s.put("db", "dbkey", later); err != nil {
		t.Fatal(err)
	}
	if err := s.waitRead(ctr, "/db_password", File("dbkey", later, ""), time.Minute); err != nil {
		t.Fatalf("a live update under userns-remap: %v", err)
	}
	scanLeaks(t, s, c)
}

// subIDStart returns the first subordinate id /etc/subuid (or subgid) grants user.
func subIDStart(file, user string) (int, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(parts) == 3 && parts[0] == user {
			return strconv.Atoi(parts[1])
		}
	}
	return 0, fmt.Errorf("%s grants %s no range", file, user)
}
