package agent

import (
	"io"
	"log/slog"
)

// UnderSystemd reports whether the process runs as a systemd service (its output goes to the
// journal): systemd sets INVOCATION_ID for every unit and JOURNAL_STREAM when stdout or stderr
// is connected to the journal.
func UnderSystemd(getenv func(string) string) bool {
	return getenv("INVOCATION_ID") != "" || getenv("JOURNAL_STREAM") != ""
}

// NewLogger returns the agent's logger: JSON lines under systemd (the journal keeps them
// whole and tools parse them), text otherwise. level can change while it runs (config reload).
// Attributes are names, ids, sequences and digest prefixes; never a secret value.
func NewLogger(w io.Writer, level *slog.LevelVar, json bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if json {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
