package store

// The bbolt backend reads its file through a read-only shared mapping: every page a
// transaction reads stays mapped into the agbot's memory afterwards (its RSS), long after the
// fan-out or the start that read it; after a fan-out to 10,000 nodes that is some 117 MiB of
// a 134 MB file. ReleaseMapped hands them back to the kernel's page cache (agbot/memtrim calls
// it when the agbot is quiet); a later read maps each page again, a minor fault.

// mapper is a backend that maps its data into the process.
type mapper interface {
	releaseMapped() error
}

// ReleaseMapped drops the pages of the state file the process has mapped (bbolt) from its
// memory; the data is untouched and the next read maps what it needs. A store without a
// mapping (PostgreSQL) does nothing. Safe at any time, concurrently with transactions.
func (s *Store) ReleaseMapped() error {
	if m, ok := s.be.(mapper); ok {
		return m.releaseMapped()
	}
	return nil
}

// releaseMapped holds a read transaction while it drops the mapping's pages: bbolt moves or
// resizes its mapping only under a lock that every open read transaction keeps shared, so
// the address range is bbolt's file for as long as the call lasts.
func (b *boltBackend) releaseMapped() error {
	tx, err := b.db.Begin(false)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return dropMapped(b.db.Info().Data, uintptr(tx.Size()))
}
