package agreement

import (
	"context"
	"fmt"
	"time"

	"github.com/edge-secrets/anax-agent/container"
)

// ContainerDied handles a death that the worker's Watch reported. The engine restarts the
// container by its restart policy, so the manager only notes it on the agreement (the local
// API shows it) and logs it; a container that belongs to no agreement is removed.
func (m *Manager) ContainerDied(ctx context.Context, d container.Death) error {
	recs, err := m.db.list()
	if err != nil {
		return err
	}
	var id string
	for _, r := range recs {
		if r.Instance == d.InstanceID {
			id = r.ID
		}
	}
	if id == "" {
		m.log.Warn("a container of no agreement died; removing it", "instance", d.InstanceID, "container", d.Name, "id", d.ID)
		return m.runner.Stop(ctx, d.InstanceID)
	}
	release, err := m.begin(id)
	if err != nil {
		return err
	}
	defer release()
	r, err := m.db.get(id)
	if err != nil || r == nil {
		return err
	}
	m.log.Warn("container exited; the engine restarts it", "agreement", id, "container", d.Spec, "id", d.ID, "exit_code", d.ExitCode)
	r.Note = fmt.Sprintf("container %s exited with code %d at %s", d.Spec, d.ExitCode, d.Time.UTC().Format(time.RFC3339))
	return m.db.put(r)
}
