package store

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// dropMapped tells the kernel the process no longer needs [addr, addr+size) of a read-only
// shared file mapping: the pages leave the process's memory and stay in the page cache.
func dropMapped(addr, size uintptr) error {
	if size == 0 {
		return nil
	}
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, addr, size, unix.MADV_DONTNEED); e != 0 {
		return fmt.Errorf("release the state file's mapped pages: %w", e)
	}
	return nil
}
