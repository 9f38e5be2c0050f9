package leakscan

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The scan helpers find what was written, skip what they are told to, and never print a value.
func TestFilesFindDescribe(t *testing.T) {
	c := New("unit")
	a, b := c.Next("a"), c.Next("b")
	dir := t.TempDir()
	skip := filepath.Join(dir, "tmpfs")
	for p, body := range map[string]string{
		filepath.Join(dir, "log"):         "x=" + a,
		filepath.Join(dir, "clean"):       "nothing",
		filepath.Join(skip, "store"):      b,
		filepath.Join(dir, "sub", "core"): "",
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	leaks, cores, files, err := Files(dir, []string{skip}, c.All())
	if err != nil {
		t.Fatal(err)
	}
	if want := []Leak{{Label: "a #1", Where: filepath.Join(dir, "log")}}; !reflect.DeepEqual(leaks, want) {
		t.Errorf("leaks = %v, want %v", leaks, want)
	}
	if want := []string{filepath.Join(dir, "sub", "core")}; !reflect.DeepEqual(cores, want) {
		t.Errorf("cores = %v, want %v", cores, want)
	}
	if files != 3 {
		t.Errorf("files = %d, want 3", files)
	}
	if got := Find([]byte(b+a), c.All()); !reflect.DeepEqual(got, []string{"a #1", "b #2"}) {
		t.Errorf("Find = %v, want [a #1 b #2]", got)
	}
	if d := c.Describe("pre-" + a); strings.Contains(d, a) || !strings.Contains(d, "a #1") {
		t.Errorf("Describe = %q: want the label, not the value", d)
	}
}
