package container

import (
	"context"
	"fmt"
	"io"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// Logs copies the output (stdout and stderr, in order) of one of this agent's service
// containers to w, and with follow keeps copying until ctx is done or the container stops
// (hzn service log). Only containers the worker made are read.
func (w *Worker) Logs(ctx context.Context, id string, follow bool, out io.Writer) error {
	list, err := w.listLabels(ctx, "")
	if err != nil {
		return err
	}
	mine := false
	for _, c := range list {
		mine = mine || c.ID == id
	}
	if !mine {
		return fmt.Errorf("container %.12s: %w", id, ErrNotFound)
	}
	rc, err := w.api.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: follow})
	if err != nil {
		return fmt.Errorf("container %.12s: logs: %w", id, err)
	}
	defer rc.Close()
	_, err = stdcopy.StdCopy(out, out, rc)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
