package container

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/edge-secrets/anax-agent/protocol"
)

const (
	onUpdateNone    = "none"
	onUpdateRestart = "restart"
	onUpdateSignal  = "signal:"
)

// onUpdateLabel encodes a parsed onUpdate action for the container's label: "none",
// "restart" or "signal:SIG<NAME>". It checks the value again through protocol.ParseOnUpdate,
// the one parser of onUpdate.
func onUpdateLabel(o protocol.OnUpdate) (string, error) {
	var s string
	switch o.Kind {
	case protocol.OnUpdateNone:
		return onUpdateNone, nil
	case protocol.OnUpdateRestart:
		return onUpdateRestart, nil
	case protocol.OnUpdateSignal:
		s = onUpdateSignal + o.Signal
	default:
		return "", fmt.Errorf("onUpdate kind %d: %w", o.Kind, ErrInvalid)
	}
	if _, err := protocol.ParseOnUpdate(s); err != nil {
		return "", fmt.Errorf("onUpdate: %w: %w", err, ErrInvalid)
	}
	return s, nil
}

// AfterUpdate runs, once per container of the agreement that mounts a changed secret, what the
// update needs after secretfs applied it:
//   - store in restart mode: restart the container once (the file mount can not change live);
//   - otherwise "restart" if any changed secret asks for it, else each distinct "signal:<SIG>"
//     once; "none" does nothing (the process sees the new file on its next read).
//
// changed lists secret names. It returns ErrNotFound when the agreement has no container.
func (w *Worker) AfterUpdate(ctx context.Context, agreementID string, changed []string) error {
	if err := checkName("agreement id", agreementID); err != nil {
		return err
	}
	for _, name := range changed {
		if err := protocol.ValidateSecretName(name); err != nil {
			return fmt.Errorf("agreement %q: %w: %w", agreementID, err, ErrInvalid)
		}
	}
	list, err := w.containersOf(ctx, agreementID)
	if err != nil {
		return err
	}
	var errs []error
	for _, lc := range list {
		if err := w.afterUpdateOne(ctx, lc, changed); err != nil {
			errs = append(errs, fmt.Errorf("agreement %q container %q: %w", agreementID, lc.Name, err))
		}
	}
	return errors.Join(errs...)
}

type labelled struct {
	Container
	labels map[string]string
}

func (w *Worker) afterUpdateOne(ctx context.Context, lc labelled, changed []string) error {
	mounted := map[string]bool{}
	for _, s := range lc.Secrets {
		mounted[s] = true
	}
	actions := splitOnUpdate(lc.labels[labelOnUpdate])
	var hit []string
	restart := false
	signals := map[string]bool{}
	for _, name := range changed {
		if !mounted[name] {
			continue
		}
		hit = append(hit, name)
		switch a := actions[name]; {
		case a == onUpdateRestart:
			restart = true
		case strings.HasPrefix(a, onUpdateSignal):
			signals[strings.TrimPrefix(a, onUpdateSignal)] = true
		}
	}
	if len(hit) == 0 {
		return nil
	}
	if StoreMode(lc.labels[labelStoreMode]) == modeRestart {
		restart = true
	}
	if restart {
		if lc.State == "running" {
			w.markIntended(lc.ID)
		}
		if err := w.restart(ctx, lc.ID); err != nil {
			return fmt.Errorf("restart: %w", err)
		}
		w.log.Info("restarted container after secret update", "container", lc.Name, "id", lc.ID, "secrets", hit)
		return nil
	}
	if lc.State != "running" {
		return nil // nothing to signal; it reads the new file when it starts
	}
	sigs := make([]string, 0, len(signals))
	for s := range signals {
		sigs = append(sigs, s)
	}
	sort.Strings(sigs)
	for _, sig := range sigs {
		if err := w.api.ContainerKill(ctx, lc.ID, sig); err != nil {
			return fmt.Errorf("signal %s: %w", sig, err)
		}
		w.log.Info("signalled container after secret update", "container", lc.Name, "id", lc.ID, "signal", sig, "secrets", hit)
	}
	return nil
}
