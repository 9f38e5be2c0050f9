package linux

import (
	"bufio"
	_ "embed"
	"fmt"
	"strings"
)

// UnitFile is the systemd unit for the agent (anax-agent.service in this folder), embedded so
// the binary can print or install the exact file that was tested.
//
//go:embed anax-agent.service
var UnitFile string

// UnitSettings returns the unit's Key=Value lines, by key, in file order (sections are not
// told apart: every key of this unit is unique to its section).
func UnitSettings() (map[string][]string, error) {
	settings := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(UnitFile))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("unit line %d %q is not Key=Value", n, line)
		}
		settings[k] = append(settings[k], v)
	}
	return settings, sc.Err()
}

// UnitPrivileges is what the unit grants the agent's process.
type UnitPrivileges struct {
	Capabilities []string // CapabilityBoundingSet, e.g. "CAP_SYS_ADMIN"
	NoNewPrivs   bool     // NoNewPrivileges=yes
}

// ReadUnitPrivileges reads the capability bounding set and NoNewPrivileges of the unit, so
// tests run the agent with exactly what systemd gives it.
func ReadUnitPrivileges() (UnitPrivileges, error) {
	s, err := UnitSettings()
	if err != nil {
		return UnitPrivileges{}, err
	}
	var p UnitPrivileges
	for _, v := range s["CapabilityBoundingSet"] {
		p.Capabilities = append(p.Capabilities, strings.Fields(v)...)
	}
	if len(p.Capabilities) == 0 {
		return p, fmt.Errorf("unit has no CapabilityBoundingSet")
	}
	for _, v := range s["NoNewPrivileges"] {
		p.NoNewPrivs = v == "yes" || v == "true" || v == "1" || v == "on"
	}
	return p, nil
}

// SetprivArgs is the setpriv(1) command line that starts a program with the unit's privileges:
// the bounding set, no inheritable or ambient capabilities, and no_new_privs.
func (p UnitPrivileges) SetprivArgs() []string {
	caps := []string{"-all"}
	for _, c := range p.Capabilities {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	args := []string{"setpriv", "--bounding-set=" + strings.Join(caps, ","), "--inh-caps=-all", "--ambient-caps=-all"}
	if p.NoNewPrivs {
		args = append(args, "--no-new-privs")
	}
	return append(args, "--")
}
