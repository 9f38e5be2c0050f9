//go:build !linux

package store

// dropMapped leaves the mapping to the operating system where the agbot is not deployed.
func dropMapped(addr, size uintptr) error { return nil }
