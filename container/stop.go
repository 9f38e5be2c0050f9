package container

import (
	"context"
	"errors"
	"fmt"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// Stop stops (SIGTERM, then SIGKILL after Options.StopTimeout) and removes every container of
// the agreement, in parallel. Stopping an agreement with no containers is not an error.
func (w *Worker) Stop(ctx context.Context, agreementID string) error {
	if err := checkName("agreement id", agreementID); err != nil {
		return err
	}
	list, err := w.listLabels(ctx, agreementID)
	if err != nil {
		return fmt.Errorf("agreement %q: %w", agreementID, err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(list))
	for i, c := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.remove(ctx, c.Container)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agreement %q: %w", agreementID, err)
	}
	if err := w.removeNetworks(ctx, agreementID); err != nil {
		return fmt.Errorf("agreement %q: %w", agreementID, err)
	}
	return nil
}

func (w *Worker) remove(ctx context.Context, c Container) error {
	w.markIntended(c.ID)
	if err := w.api.ContainerStop(ctx, c.ID, w.stopOptions()); err != nil && !cerrdefs.IsNotFound(err) {
		// Removing with force still kills it; report the stop failure only if that fails too.
		w.log.Warn("stop container failed, removing by force", "container", c.Name, "id", c.ID, "err", err)
	}
	err := w.api.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %q: %w", c.Name, err)
	}
	w.log.Info("removed container", "agreement", c.InstanceID, "container", c.Name, "id", c.ID)
	return nil
}

// List returns every container this agent owns (any state), from their labels: after an agent
// restart the agreement manager reconciles them with its own state.
func (w *Worker) List(ctx context.Context) ([]Container, error) {
	list, err := w.listLabels(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]Container, len(list))
	for i, lc := range list {
		out[i] = lc.Container
	}
	return out, nil
}

// listLabels lists the agent's service containers, of one agreement if agreementID is not "".
func (w *Worker) listLabels(ctx context.Context, agreementID string) ([]labelled, error) {
	f := filters.NewArgs(
		filters.Arg("label", labelAgent+"="+w.agent),
		filters.Arg("label", labelRole+"="+roleService),
	)
	if agreementID != "" {
		f.Add("label", labelAgreement+"="+agreementID)
	}
	found, err := w.api.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]labelled, 0, len(found))
	for _, s := range found {
		c := fromLabels(s.ID, s.Labels)
		if len(s.Names) > 0 {
			c.Name = trimSlash(s.Names[0])
		}
		c.State = string(s.State)
		out = append(out, labelled{Container: c, labels: s.Labels})
	}
	return out, nil
}

func fromLabels(id string, l map[string]string) Container {
	return Container{
		ID:         id,
		InstanceID: l[labelAgreement],
		Service:    Service{Org: l[labelServiceOrg], URL: l[labelServiceURL], Version: l[labelServiceVer]},
		Spec:       l[labelSpecName],
		StoreID:    l[labelStore],
		Secrets:    splitList(l[labelSecrets]),
	}
}

func trimSlash(name string) string {
	if len(name) > 0 && name[0] == '/' {
		return name[1:]
	}
	return name
}

// Restart restarts every container of the agreement (starting those that are not running),
// e.g. after a reported death or once the secrets of a rebooted node are restored: a container
// whose store files are missing does not start, the engine says "bind source path does not
// exist". It returns ErrNotFound when the agreement has no container.
func (w *Worker) Restart(ctx context.Context, agreementID string) error {
	if err := checkName("agreement id", agreementID); err != nil {
		return err
	}
	list, err := w.containersOf(ctx, agreementID)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range list {
		if c.State == "running" {
			w.markIntended(c.ID) // a stopped one does not die on the way
		}
		if err := w.restart(ctx, c.ID); err != nil {
			errs = append(errs, fmt.Errorf("agreement %q: restart container %q: %w", agreementID, c.Name, err))
			continue
		}
		w.log.Info("restarted container", "agreement", agreementID, "container", c.Name, "id", c.ID)
	}
	return errors.Join(errs...)
}

// containersOf lists an agreement's containers; none is ErrNotFound.
func (w *Worker) containersOf(ctx context.Context, agreementID string) ([]labelled, error) {
	list, err := w.listLabels(ctx, agreementID)
	if err != nil {
		return nil, fmt.Errorf("agreement %q: %w", agreementID, err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("agreement %q: %w", agreementID, ErrNotFound)
	}
	return list, nil
}
