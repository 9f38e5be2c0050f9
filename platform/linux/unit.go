package linux

import _ "embed"

// UnitFile is the systemd unit for the agent (anax-agent.service in this folder), embedded so
// the binary can print or install the exact file that was tested.
//
//go:embed anax-agent.service
var UnitFile string
