package container

import (
	"sort"
	"strings"
)

// Labels the worker writes on its containers. They name things (agent, agreement, service,
// secret names, store id) and never carry a secret value.
const (
	labelPrefix     = "org.edge-secrets.anax-agent."
	labelAgent      = labelPrefix + "agent"
	labelRole       = labelPrefix + "role"
	labelAgreement  = labelPrefix + "agreement"
	labelServiceOrg = labelPrefix + "service.org"
	labelServiceURL = labelPrefix + "service.url"
	labelServiceVer = labelPrefix + "service.version"
	labelSpecName   = labelPrefix + "container"
	labelStore      = labelPrefix + "store"
	labelStoreMode  = labelPrefix + "store.mode"
	labelSecrets    = labelPrefix + "secrets"   // name,name,...
	labelOnUpdate   = labelPrefix + "on-update" // name=action,... (actions other than none)
	roleService     = "service"
	roleProbe       = "user-probe"
	listSep         = ","
	onUpdateKVSep   = "="
)

// joinOnUpdate encodes the non-default onUpdate actions, sorted by secret name.
func joinOnUpdate(actions map[string]string) string {
	names := make([]string, 0, len(actions))
	for name, a := range actions {
		if a != "" && a != onUpdateNone {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = name + onUpdateKVSep + actions[name]
	}
	return strings.Join(parts, listSep)
}

func splitOnUpdate(label string) map[string]string {
	actions := map[string]string{}
	for _, kv := range splitList(label) {
		if name, a, ok := strings.Cut(kv, onUpdateKVSep); ok {
			actions[name] = a
		}
	}
	return actions
}

func splitList(label string) []string {
	if label == "" {
		return nil
	}
	return strings.Split(label, listSep)
}
