package container

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
)

// roleNetwork labels an agreement's network.
const roleNetwork = "network"

// NetworkName is the engine network an agreement's containers share, as anax gives each
// agreement a network of its own: each container is reachable there by its name in the
// deployment (the alias), and from no other agreement's containers.
func NetworkName(agreementID string) string { return agreementID + "-net" }

// ensureNetwork creates the agreement's network unless it exists (an agent that died
// between creating it and recording the agreement left it). It reports whether it created it.
func (w *Worker) ensureNetwork(ctx context.Context, agreementID string) (bool, error) {
	name := NetworkName(agreementID)
	found, err := w.agreementNetworks(ctx, agreementID)
	if err != nil {
		return false, err
	}
	for _, n := range found {
		if n.Name == name {
			return false, nil
		}
	}
	_, err = w.api.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge",
		Labels: map[string]string{labelAgent: w.agent, labelRole: roleNetwork, labelAgreement: agreementID}})
	if err != nil {
		return false, fmt.Errorf("create network %q: %w", name, err)
	}
	return true, nil
}

func (w *Worker) agreementNetworks(ctx context.Context, agreementID string) ([]network.Summary, error) {
	f := filters.NewArgs(filters.Arg("label", labelAgent+"="+w.agent), filters.Arg("label", labelRole+"="+roleNetwork))
	if agreementID != "" {
		f.Add("label", labelAgreement+"="+agreementID)
	}
	list, err := w.api.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	return list, nil
}

// removeNetworks removes the agreement's network, if any.
func (w *Worker) removeNetworks(ctx context.Context, agreementID string) error {
	list, err := w.agreementNetworks(ctx, agreementID)
	if err != nil {
		return err
	}
	for _, n := range list {
		if err := w.api.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove network %q: %w", n.Name, err)
		}
	}
	return nil
}
