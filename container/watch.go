package container

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// Death reports that a container of this agent exited without the worker stopping or
// restarting it. With restart policy unless-stopped the engine starts it again; the agreement
// manager decides whether to leave it, restart it, or cancel the agreement.
type Death struct {
	Container     // from the container's labels; State is "exited"
	ExitCode  int // -1 when the engine did not say
	Time      time.Time
}

// Watch calls fn, in order, for each container of this agent that dies, until ctx is done
// (it returns ctx.Err()) or the engine's event stream fails (it returns that error; events may
// have been missed: List, reconcile, and Watch again). Deaths the worker causes itself (Stop,
// a restart after an update, a rollback) are not reported.
func (w *Worker) Watch(ctx context.Context, fn func(Death)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Since the call, not since the subscription: the engine replays what happened in between.
	now := time.Now()
	msgs, errs := w.api.Events(ctx, events.ListOptions{Since: fmt.Sprintf("%d.%09d", now.Unix(), now.Nanosecond()), Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(events.ActionDie)),
		filters.Arg("label", labelAgent+"="+w.agent),
		filters.Arg("label", labelRole+"="+roleService),
	)})
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("docker events: %w", err)
		case m := <-msgs:
			if m.Action != events.ActionDie || w.takeIntended(m.Actor.ID) {
				continue
			}
			d := Death{Container: fromLabels(m.Actor.ID, m.Actor.Attributes), ExitCode: -1,
				Time: time.Unix(0, m.TimeNano)}
			d.Name = m.Actor.Attributes["name"]
			d.State = "exited"
			if code, err := strconv.Atoi(m.Actor.Attributes["exitCode"]); err == nil {
				d.ExitCode = code
			}
			fn(d)
		}
	}
}
