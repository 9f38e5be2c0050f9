package container

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/edge-secrets/anax-agent/secretfs"
)

// Holders: which running containers bind each store, and the PID of each one's init, so that
// secretfs reads the mount namespaces of a store's containers only, by PID (reading
// /proc/<pid>/mountinfo needs no ptrace access, which the agent's systemd unit does not grant).
//
// The worker learns them from the engine: a list of its containers when TrackHolders
// (re)subscribes to the event stream, then the events start, die and destroy, each confirmed by
// an inspect; and it marks a container it is about to start or restart itself. It answers
// "not known" (secretfs then keeps every version of the store) until the first list, while the
// event stream is down, and while one of the store's containers starts or restarts (an inspect
// during a restart by the engine's restart policy says "restarting").

type holderState int

const (
	holderUnknown holderState = iota // starting, restarting, or not inspected yet
	holderRunning                    // running with pid
	holderStopped                    // exists, not running, not restarting: binds nothing
)

type holder struct {
	store string
	state holderState
	pid   int
}

// holderTable is the worker's knowledge; guarded by Worker.hmu.
type holderTable struct {
	version uint64                     // counts changes, for HoldersVersion
	synced  bool                       // a list since the last (re)subscription has been read
	byID    map[string]*holder         // container id -> holder
	byStore map[string]map[string]bool // store id -> container ids, so a lookup costs one store
}

// set records h as container id's holder, keeping the store index.
func (t *holderTable) set(id string, h *holder) {
	t.version++
	if old := t.byID[id]; old != nil && old.store != h.store {
		t.unindex(id, old.store)
	}
	t.byID[id] = h
	if h.store != "" {
		if t.byStore[h.store] == nil {
			t.byStore[h.store] = map[string]bool{}
		}
		t.byStore[h.store][id] = true
	}
}

// forget drops container id.
func (t *holderTable) forget(id string) {
	t.version++
	if old := t.byID[id]; old != nil {
		t.unindex(id, old.store)
	}
	delete(t.byID, id)
}

func (t *holderTable) unindex(id, store string) {
	if ids := t.byStore[store]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(t.byStore, store)
		}
	}
}

var (
	_ secretfs.Holders          = (*Worker)(nil)
	_ secretfs.HoldersVersioner = (*Worker)(nil)
)

// Holders implements secretfs.Holders: the running containers that use storeID, known=false
// while that can not be told for sure.
func (w *Worker) Holders(storeID string) ([]secretfs.Holder, bool) {
	w.hmu.Lock()
	defer w.hmu.Unlock()
	if !w.holders.synced {
		return nil, false
	}
	var out []secretfs.Holder
	for id := range w.holders.byStore[storeID] {
		h := w.holders.byID[id]
		switch h.state {
		case holderUnknown:
			return nil, false
		case holderRunning:
			out = append(out, secretfs.Holder{Container: id, PID: h.pid})
		}
	}
	return out, true
}

// HoldersVersion implements secretfs.HoldersVersioner: it changes whenever what Holders
// answers for any store may have changed.
func (w *Worker) HoldersVersion() uint64 {
	w.hmu.Lock()
	defer w.hmu.Unlock()
	return w.holders.version
}

// holdUnknown marks container id of store (store "" keeps the one known) as starting or
// restarting: its store's scans are incomplete until refreshHolder says otherwise.
func (w *Worker) holdUnknown(id, store string) {
	w.hmu.Lock()
	defer w.hmu.Unlock()
	h := holder{state: holderUnknown, store: store}
	if old := w.holders.byID[id]; old != nil && store == "" {
		h.store = old.store
	}
	w.holders.set(id, &h)
}

// refreshHolder inspects container id and records what it binds now. A container that is gone
// is forgotten; an inspect that fails otherwise leaves it unknown.
func (w *Worker) refreshHolder(ctx context.Context, id string) {
	insp, err := w.api.ContainerInspect(ctx, id)
	w.hmu.Lock()
	defer w.hmu.Unlock()
	if cerrdefs.IsNotFound(err) {
		w.holders.forget(id)
		return
	}
	h := holder{state: holderUnknown}
	if old := w.holders.byID[id]; old != nil {
		h.store = old.store
	}
	if err != nil || insp.ContainerJSONBase == nil || insp.State == nil || insp.Config == nil {
		w.holders.set(id, &h)
		return
	}
	h.store = insp.Config.Labels[labelStore]
	switch st := insp.State; {
	case st.Running && st.Pid > 0 && !st.Restarting:
		h.state, h.pid = holderRunning, st.Pid
	case st.Restarting || st.Running:
		h.state = holderUnknown
	default:
		h.state = holderStopped
	}
	w.holders.set(id, &h)
}

// TrackHolders follows the engine until ctx is done: it subscribes to the events of this
// agent's service containers, lists them, and keeps the table current; when the stream fails
// (dockerd restarted) every store is unknown until it has subscribed and listed again.
func (w *Worker) TrackHolders(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := w.trackOnce(ctx)
		w.hmu.Lock()
		w.holders.synced, w.holders.version = false, w.holders.version+1
		w.hmu.Unlock()
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("container events lost; secret stores are not scanned until they are back", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// trackOnce subscribes, lists and follows the stream until it fails.
func (w *Worker) trackOnce(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, errs := w.api.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(events.ActionStart)),
		filters.Arg("event", string(events.ActionDie)),
		filters.Arg("event", string(events.ActionDestroy)),
		filters.Arg("label", labelAgent+"="+w.agent),
		filters.Arg("label", labelRole+"="+roleService),
	)})
	list, err := w.listLabels(ctx, "")
	if err != nil {
		return err
	}
	for _, c := range list {
		w.refreshHolder(ctx, c.ID)
	}
	w.hmu.Lock()
	w.holders.synced, w.holders.version = true, w.holders.version+1
	w.hmu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return fmt.Errorf("docker events: %w", err)
		case m := <-msgs:
			if m.Action == events.ActionDestroy {
				w.hmu.Lock()
				w.holders.forget(m.Actor.ID)
				w.hmu.Unlock()
				continue
			}
			w.holdUnknown(m.Actor.ID, m.Actor.Attributes[labelStore])
			w.refreshHolder(ctx, m.Actor.ID)
		}
	}
}

// restart restarts container id through the engine; its store is unknown to secretfs while
// it does (the new process binds the store afresh).
func (w *Worker) restart(ctx context.Context, id string) error {
	w.holdUnknown(id, "")
	err := w.api.ContainerRestart(ctx, id, w.stopOptions())
	w.refreshHolder(ctx, id)
	return err
}
