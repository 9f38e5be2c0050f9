package agreement

import (
	"fmt"
	"time"
)

// Info describes an agreement for the local API and `hzn agreement list`. It holds names,
// sequence numbers, times and digest prefixes: never a value.
type Info struct {
	ID       string  `json:"id"`
	Instance string  `json:"instance"` // the agreement's name in container names and labels
	Agbot    string  `json:"agbot"`
	Phase    Phase   `json:"phase"`
	Service  Service `json:"service"`
	// Sequence is the last update applied (the proposal's when none was).
	Sequence   uint64          `json:"sequence"`
	AcceptedAt time.Time       `json:"acceptedAt"`
	UpdatedAt  time.Time       `json:"updatedAt"`
	Mode       StoreMode       `json:"mode"` // how updates reach the containers
	Containers []ContainerInfo `json:"containers"`
	Secrets    []SecretInfo    `json:"secrets"`
	Note       string          `json:"note,omitempty"`
}

// Service names the service an agreement runs.
type Service struct {
	Org     string `json:"org"`
	URL     string `json:"url"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
}

// ContainerInfo is one container of an agreement.
type ContainerInfo struct {
	Name        string   `json:"name"`
	Image       string   `json:"image"`
	ContainerID string   `json:"containerId,omitempty"` // "" while waiting for a resync
	StoreID     string   `json:"storeId,omitempty"`
	UID         int      `json:"uid"`
	GID         int      `json:"gid"`
	Secrets     []string `json:"secrets,omitempty"`
}

// SecretInfo is one secret of an agreement.
type SecretInfo struct {
	Name     string `json:"name"`
	Format   string `json:"format"`
	OnUpdate string `json:"onUpdate,omitempty"`
	// Digest is a prefix of the HMAC-SHA256 of the value under the node's key: it changes
	// when the value changes and tells nothing about the value.
	Digest string `json:"digest"`
	// Uncertain: the agent stopped while this secret was being swapped; it holds its old or
	// new value until the resync the agent asked for.
	Uncertain bool `json:"uncertain,omitempty"`
}

// Agreements lists every agreement on the node, sorted by id.
func (m *Manager) Agreements() ([]Info, error) {
	recs, err := m.db.list()
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(recs))
	for _, r := range recs {
		out = append(out, m.info(r))
	}
	return out, nil
}

// Agreement describes one agreement, or returns ErrNotFound.
func (m *Manager) Agreement(id string) (Info, error) {
	r, err := m.db.get(id)
	if err != nil {
		return Info{}, err
	}
	if r == nil {
		return Info{}, fmt.Errorf("agreement %q: %w", id, ErrNotFound)
	}
	return m.info(r), nil
}

func (m *Manager) info(r *record) Info {
	in := Info{
		ID: r.ID, Instance: r.Instance, Agbot: r.Agbot, Phase: r.Phase,
		Service:  Service{Org: r.Service.Org, URL: r.Service.URL, Version: r.Service.Version, Arch: r.Service.Arch},
		Sequence: r.Sequence, AcceptedAt: r.AcceptedAt, UpdatedAt: r.UpdatedAt, Mode: m.stores.Mode(), Note: r.Note,
	}
	for _, cr := range r.Containers {
		c := r.Service.AllContainers()[cr.Name]
		in.Containers = append(in.Containers, ContainerInfo{
			Name: cr.Name, Image: c.Image, ContainerID: cr.ContainerID, StoreID: cr.StoreID,
			UID: cr.UID, GID: cr.GID, Secrets: sortedNames(c.Secrets),
		})
	}
	uncertain := map[string]bool{}
	for _, name := range r.Uncertain {
		uncertain[name] = true
	}
	decls := declared(&r.Service)
	for _, name := range sortedNames(decls) {
		d := decls[name]
		in.Secrets = append(in.Secrets, SecretInfo{
			Name: name, Format: d.FileFormat(), OnUpdate: d.OnUpdate,
			Digest: shortDigest(r.Digests[name]), Uncertain: uncertain[name],
		})
	}
	return in
}
