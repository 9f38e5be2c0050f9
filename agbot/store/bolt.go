package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

const (
	bucketMeta   = "meta"
	bucketOutbox = "outbox"
)

// Open opens (creating if needed) the bbolt state file at path. It keeps bbolt's defaults:
// etcd's choice (a map of free pages, not written at each commit) was measured for the
// fan-out's commits and did not pay (BenchmarkFanoutCommits).
func Open(path string) (*Store, error) {
	return openBolt(path, bolt.Options{Timeout: 2 * time.Second})
}

func openBolt(path string, opts bolt.Options) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &opts)
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{bucketMeta, bucketOutbox} {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return newStore(&boltBackend{db: db}), nil
}

// boltBackend is one bbolt file: a bucket per table, "meta", and "outbox" with a sub-bucket
// per node whose sequence numbers the node's messages.
type boltBackend struct{ db *bolt.DB }

func (b *boltBackend) update(fn func(Tx) error) error {
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b *boltBackend) view(fn func(Tx) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b *boltBackend) close() error { return b.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) get(table string, key []byte) ([]byte, error) {
	b := t.tx.Bucket([]byte(table))
	if b == nil {
		return nil, nil
	}
	return bytes.Clone(b.Get(key)), nil
}

func (t boltTx) put(table string, key, val []byte) error {
	b, err := t.tx.CreateBucketIfNotExists([]byte(table))
	if err != nil {
		return err
	}
	return b.Put(key, val)
}

func (t boltTx) del(table string, key []byte) (bool, error) {
	b := t.tx.Bucket([]byte(table))
	if b == nil || b.Get(key) == nil {
		return false, nil
	}
	return true, b.Delete(key)
}

func (t boltTx) each(table string, prefix []byte, fn func(k, v []byte) error) error {
	b := t.tx.Bucket([]byte(table))
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

func outboxKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}

func (t boltTx) enqueue(org, node string, m *Message) error {
	nb, err := t.tx.Bucket([]byte(bucketOutbox)).CreateBucketIfNotExists(Key(org, node))
	if err != nil {
		return err
	}
	id, err := nb.NextSequence()
	if err != nil {
		return err
	}
	m.ID = id
	raw, err := encodeMessage(m)
	if err != nil {
		return err
	}
	return nb.Put(outboxKey(id), raw)
}

func (t boltTx) remove(org, node string, id uint64) (bool, error) {
	nb := t.tx.Bucket([]byte(bucketOutbox)).Bucket(Key(org, node))
	if nb == nil || nb.Get(outboxKey(id)) == nil {
		return false, nil
	}
	return true, nb.Delete(outboxKey(id))
}

func (t boltTx) dropNode(org, node string) error {
	err := t.tx.Bucket([]byte(bucketOutbox)).DeleteBucket(Key(org, node))
	if errors.Is(err, berrors.ErrBucketNotFound) {
		return nil
	}
	return err
}

func (t boltTx) outbox(fn func(org, node string, raw []byte) error) error {
	ob := t.tx.Bucket([]byte(bucketOutbox))
	return ob.ForEachBucket(func(k []byte) error {
		org, node := SplitKey(k)
		return ob.Bucket(k).ForEach(func(_, raw []byte) error { return fn(org, node, raw) })
	})
}

func (t boltTx) meta(key string) ([]byte, error) {
	return bytes.Clone(t.tx.Bucket([]byte(bucketMeta)).Get([]byte(key))), nil
}

func (t boltTx) setMeta(key string, val []byte) error {
	return t.tx.Bucket([]byte(bucketMeta)).Put([]byte(key), val)
}
