package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseBind(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Bind
		err  string
	}{
		{in: "/tmp:/hosttmp", want: Bind{Source: "/tmp", Target: "/hosttmp"}},
		{in: "/tmp/testdata:/tmp/mydata:ro", want: Bind{Source: "/tmp/testdata", Target: "/tmp/mydata", ReadOnly: true}},
		{in: "myvolume1:/tmp/mydata2", want: Bind{Source: "myvolume1", Target: "/tmp/mydata2", Volume: true}},
		{in: "/tmp", err: "source:target"},
		{in: "/a/../b:/x", err: "clean absolute"},
		{in: "/a:x", err: "target"},
		{in: "/a:/", err: "must not be /"},
		{in: "/a:/b:z", err: "only ro or rw"},
		{in: "rel/dir:/b", err: "volume name"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseBind(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseBind = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseDeviceAndPorts(t *testing.T) {
	d, err := ParseDevice("/dev/bus/usb/001/001:/dev/bus/usb/001/001")
	if err != nil || d.Perms != "rwm" || d.Container != "/dev/bus/usb/001/001" {
		t.Fatalf("device = %+v, %v", d, err)
	}
	for _, bad := range []string{"/etc/shadow", "/dev/../etc/shadow", "/dev/x:/y:rwx", "/dev/x:/"} {
		if _, err := ParseDevice(bad); err == nil {
			t.Errorf("device %q accepted", bad)
		}
	}
	p, err := PortBinding{HostPort: "5200:6414/udp", HostIP: "1.2.3.4"}.Parse()
	if err != nil || p != (Port{HostIP: "1.2.3.4", HostPort: 5200, ContainerPort: 6414, Proto: "udp"}) {
		t.Fatalf("port = %+v, %v", p, err)
	}
	p, err = PortBinding{HostPort: "8888"}.Parse()
	if err != nil || p.HostPort != 8888 || p.ContainerPort != 8888 || p.Proto != "tcp" {
		t.Fatalf("port = %+v, %v", p, err)
	}
	p, err = EphemeralPort{LocalhostOnly: true, PortAndProtocol: "7777/udp"}.Parse()
	if err != nil || p.HostPort != 0 || p.HostIP != "127.0.0.1" {
		t.Fatalf("ephemeral = %+v, %v", p, err)
	}
	for _, bad := range []PortBinding{{HostPort: "0"}, {HostPort: "70000"}, {HostPort: "80/sctp"}, {HostPort: "80", HostIP: "host name"}} {
		if _, err := bad.Parse(); err == nil {
			t.Errorf("port %+v accepted", bad)
		}
	}
}

// TestContainerDeploymentFields: each deployment field's rule, named in the error.
func TestContainerDeploymentFields(t *testing.T) {
	for _, tc := range []struct {
		name, field, doc string
	}{
		{"bind", "binds[0]", `{"binds":["/a/./b:/c"]}`},
		{"device", "devices[0]", `{"devices":["/proc/kcore"]}`},
		{"tmpfs target", `tmpfs["/"]`, `{"tmpfs":{"/":""}}`},
		{"tmpfs option", `tmpfs["/app"]`, `{"tmpfs":{"/app":"suid"}}`},
		{"network", "network", `{"network":"container:other"}`},
		{"max_cpus", "max_cpus", `{"max_cpus":5000}`},
		{"log_driver", "log_driver", `{"log_driver":"splunk"}`},
		{"entrypoint", "entrypoint[0]", `{"entrypoint":["a\u0000b"]}`},
		{"ports", "ports", `{"ports":[{"HostPort":"x"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Container{Image: "i:1"}
			if err := json.Unmarshal([]byte(tc.doc), &c); err != nil {
				t.Fatal(err)
			}
			err := c.validate("c")
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "c."+tc.field) {
				t.Fatalf("err = %v, want field c.%s", err, tc.field)
			}
		})
	}
	ok := Container{Image: "i:1", Binds: []string{"/tmp:/t:ro"}, Devices: []string{"/dev/null"}, Tmpfs: map[string]string{"/app": "size=64m,noexec"},
		Ports: []PortBinding{{HostPort: "80:8080"}}, Network: "host", MaxCPUs: 1.5, LogDriver: "json-file", Entrypoint: []string{"/bin/sh"}}
	if err := ok.validate("c"); err != nil {
		t.Fatalf("valid container refused: %v", err)
	}
}

func TestInputEnvAndResolve(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		v    any
		want string
		err  bool
	}{
		{"string", "bp_string", "bp_string", false},
		{"", "x", "x", false},
		{"int", float64(10), "10", false},
		{"float", 10.22, "10.220000", false},
		{"float", json.Number("41.921766"), "41.921766", false},
		{"float", float64(3), "3", false},
		{"boolean", false, "false", false},
		{"bool", true, "true", false},
		{"list of strings", []any{"bp_abcd", "bp_1234"}, "bp_abcd bp_1234", false},
		{"int", "10", "", true},
		{"int", 1.5, "", true},
		{"list of strings", []any{"a", 1.0}, "", true},
		{"string", map[string]any{}, "", true},
	} {
		got, err := InputEnv(tc.typ, tc.v)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("InputEnv(%q, %v) = %q, %v; want %q, err %v", tc.typ, tc.v, got, err, tc.want, tc.err)
		}
	}
	s := &Service{Org: "o", URL: "u", Version: "2.3.0", Arch: "amd64", UserInput: []InputVar{
		{Name: "var1", Type: "string", Value: "bp", Set: true},
		{Name: "var2", Type: "int"},
		{Name: "var5", Type: "string", Value: "default", Set: true},
	}}
	node := []InputBlock{{ServiceOrgid: "o", ServiceURL: "u", ServiceVersionRange: "2.0.0", Inputs: []InputValue{
		{Name: "var2", Value: float64(7)}, {Name: "var5", Value: "node"}, {Name: "undeclared", Value: "x"}}}}
	env, err := ResolveInputs(s, node)
	if err != nil {
		t.Fatal(err)
	}
	if env["var1"] != "bp" || env["var2"] != "7" || env["var5"] != "node" || len(env) != 3 {
		t.Fatalf("env = %v: want policy value, node value over the default, undeclared ignored", env)
	}
	if _, err := ResolveInputs(s, nil); !errors.Is(err, ErrInputMissing) || !strings.Contains(err.Error(), "var2") {
		t.Fatalf("err = %v, want ErrInputMissing naming var2", err)
	}
	node[0].Inputs[0].Value = "seven"
	if _, err := ResolveInputs(s, node); err == nil || !strings.Contains(err.Error(), "var2") {
		t.Fatalf("err = %v, want the node's wrongly typed var2 refused", err)
	}
	node[0].ServiceVersionRange = "[3.0.0,INFINITY)"
	if _, err := ResolveInputs(s, node); !errors.Is(err, ErrInputMissing) {
		t.Fatalf("err = %v: a block for other versions must not apply", err)
	}
}
