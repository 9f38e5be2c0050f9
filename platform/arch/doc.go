// Package arch names the architectures the agent runs on (amd64, arm64, arm) and holds what
// differs on ARM edge devices, as data: GOARM variants and device model. It imports only the
// standard library, so every package may use it.
package arch
