// Package arm holds what differs on ARM edge devices, as data: architecture naming (amd64,
// arm64, arm), GOARM variants and device model. It imports only the standard library, so every
// package may use it.
package arm
