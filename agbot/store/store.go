// Package store keeps the agbot's state in one bbolt file: orgs, users, nodes, services,
// deployment policies, patterns, agreements and the per-node outbox of sealed messages
// awaiting acknowledgement. Records are JSON (anax shapes for the exchange ones). The file
// never holds a secret value in clear: the outbox holds envelopes sealed to each node.
//
// The generic Table keeps room for another backend (PostgreSQL when several agbots share
// the work, design §6). Imported by the agbot's packages only.
package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/edge-secrets/anax-agent/agbot/exchange"
)

// Sentinels.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// Store is the agbot's state file.
type Store struct {
	db *bolt.DB

	Orgs     *Table[Org]
	Users    *Table[exchange.User]
	Nodes    *Table[exchange.Node]
	Services *Table[exchange.Service]
	Policies *Table[exchange.Policy]
	Patterns *Table[exchange.Pattern]
}

// Org is an organisation served by this agbot.
type Org struct {
	ID      string `json:"id"`
	Created string `json:"created"`
}

const (
	bucketMeta   = "meta"
	bucketOutbox = "outbox"
)

// Open opens (creating if needed) the state file.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	s := &Store{db: db}
	s.Orgs = NewTable[Org](s, "orgs")
	s.Users = NewTable[exchange.User](s, "users")
	s.Nodes = NewTable[exchange.Node](s, "nodes")
	s.Services = NewTable[exchange.Service](s, "services")
	s.Policies = NewTable[exchange.Policy](s, "policies")
	s.Patterns = NewTable[exchange.Pattern](s, "patterns")
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
	return s, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Update runs fn in one read-write transaction.
func (s *Store) Update(fn func(tx *bolt.Tx) error) error { return s.db.Update(fn) }

// View runs fn in one read-only transaction.
func (s *Store) View(fn func(tx *bolt.Tx) error) error { return s.db.View(fn) }

// Meta reads a metadata value (nil if unset).
func (s *Store) Meta(key string) (out []byte, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte(bucketMeta)).Get([]byte(key)); v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	return out, err
}

// SetMeta writes a metadata value.
func (s *Store) SetMeta(key string, v []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte(bucketMeta)).Put([]byte(key), v) })
}

// Table is a bucket of JSON records keyed by org and id.
type Table[T any] struct {
	s      *Store
	bucket []byte
}

// NewTable declares a table (its bucket is created on first write).
func NewTable[T any](s *Store, bucket string) *Table[T] {
	return &Table[T]{s: s, bucket: []byte(bucket)}
}

// Key joins org and id; NUL can not occur in either (names are validated before storing).
func Key(org, id string) []byte { return []byte(org + "\x00" + id) }

// SplitKey is the inverse of Key.
func SplitKey(k []byte) (org, id string) {
	o, i, _ := bytes.Cut(k, []byte{0})
	return string(o), string(i)
}

// Get reads one record.
func (t *Table[T]) Get(org, id string) (v T, err error) {
	err = t.s.db.View(func(tx *bolt.Tx) error { v, err = t.GetTx(tx, org, id); return err })
	return v, err
}

// GetTx reads one record inside tx.
func (t *Table[T]) GetTx(tx *bolt.Tx, org, id string) (T, error) {
	var v T
	b := tx.Bucket(t.bucket)
	if b == nil {
		return v, fmt.Errorf("%s %s/%s: %w", t.bucket, org, id, ErrNotFound)
	}
	raw := b.Get(Key(org, id))
	if raw == nil {
		return v, fmt.Errorf("%s %s/%s: %w", t.bucket, org, id, ErrNotFound)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("%s %s/%s: corrupt record: %w", t.bucket, org, id, err)
	}
	return v, nil
}

// Put creates or replaces a record.
func (t *Table[T]) Put(org, id string, v T) error {
	return t.s.db.Update(func(tx *bolt.Tx) error { return t.PutTx(tx, org, id, v) })
}

// PutTx creates or replaces a record inside tx.
func (t *Table[T]) PutTx(tx *bolt.Tx, org, id string, v T) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b, err := tx.CreateBucketIfNotExists(t.bucket)
	if err != nil {
		return err
	}
	return b.Put(Key(org, id), raw)
}

// Create stores a record only if none exists under the key.
func (t *Table[T]) Create(org, id string, v T) error {
	return t.s.db.Update(func(tx *bolt.Tx) error {
		if b := tx.Bucket(t.bucket); b != nil && b.Get(Key(org, id)) != nil {
			return fmt.Errorf("%s %s/%s: %w", t.bucket, org, id, ErrExists)
		}
		return t.PutTx(tx, org, id, v)
	})
}

// Delete removes a record; ErrNotFound if there was none.
func (t *Table[T]) Delete(org, id string) error {
	return t.s.db.Update(func(tx *bolt.Tx) error { return t.DeleteTx(tx, org, id) })
}

// DeleteTx removes a record inside tx.
func (t *Table[T]) DeleteTx(tx *bolt.Tx, org, id string) error {
	b := tx.Bucket(t.bucket)
	if b == nil || b.Get(Key(org, id)) == nil {
		return fmt.Errorf("%s %s/%s: %w", t.bucket, org, id, ErrNotFound)
	}
	return b.Delete(Key(org, id))
}

// List returns the records of an org ("" for every org) in key order.
func (t *Table[T]) List(org string) (out []T, err error) {
	err = t.s.db.View(func(tx *bolt.Tx) error {
		return t.EachTx(tx, org, func(_, _ string, v T) error { out = append(out, v); return nil })
	})
	return out, err
}

// EachTx calls fn for each record of an org ("" for every org) inside tx.
func (t *Table[T]) EachTx(tx *bolt.Tx, org string, fn func(org, id string, v T) error) error {
	b := tx.Bucket(t.bucket)
	if b == nil {
		return nil
	}
	var prefix []byte
	if org != "" {
		prefix = Key(org, "")
	}
	c := b.Cursor()
	for k, raw := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, raw = c.Next() {
		var v T
		o, id := SplitKey(k)
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("%s %s/%s: corrupt record: %w", t.bucket, o, id, err)
		}
		if err := fn(o, id, v); err != nil {
			return err
		}
	}
	return nil
}

// Message is one sealed message in a node's outbox, kept until the node acknowledges it.
type Message struct {
	ID        uint64    `json:"id"` // per-node, increasing: the poll cursor
	Agreement string    `json:"agreementId"`
	Type      string    `json:"type"`
	Seq       uint64    `json:"seq"` // the protocol sequence number inside
	Envelope  []byte    `json:"envelope"`
	Queued    time.Time `json:"queued"`
	// Farewell marks a cancel sealed to keys the node's owner or an admin replaced: for
	// the old node, kept until it answers or for a day.
	Farewell bool `json:"farewell,omitempty"`
}

func outboxKey(id uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], id)
	return k[:]
}

// EnqueueTx appends m to the outbox of node (key org/node) inside tx, assigning m.ID.
func (s *Store) EnqueueTx(tx *bolt.Tx, org, node string, m *Message) error {
	nb, err := tx.Bucket([]byte(bucketOutbox)).CreateBucketIfNotExists(Key(org, node))
	if err != nil {
		return err
	}
	id, err := nb.NextSequence()
	if err != nil {
		return err
	}
	m.ID = id
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return nb.Put(outboxKey(id), raw)
}

// RemoveTx drops message id from node's outbox; it reports whether it was there.
func (s *Store) RemoveTx(tx *bolt.Tx, org, node string, id uint64) bool {
	nb := tx.Bucket([]byte(bucketOutbox)).Bucket(Key(org, node))
	if nb == nil || nb.Get(outboxKey(id)) == nil {
		return false
	}
	_ = nb.Delete(outboxKey(id))
	return true
}

// DropNodeTx removes a node's whole outbox (node deleted).
func (s *Store) DropNodeTx(tx *bolt.Tx, org, node string) error {
	err := tx.Bucket([]byte(bucketOutbox)).DeleteBucket(Key(org, node))
	if errors.Is(err, berrors.ErrBucketNotFound) {
		return nil
	}
	return err
}

// Outbox calls fn for every queued message of every node, in id order per node: used to
// rebuild the in-memory queues after a restart.
func (s *Store) Outbox(fn func(org, node string, m Message) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketOutbox)).ForEachBucket(func(k []byte) error {
			org, node := SplitKey(k)
			return tx.Bucket([]byte(bucketOutbox)).Bucket(k).ForEach(func(_, raw []byte) error {
				var m Message
				if err := json.Unmarshal(raw, &m); err != nil {
					return fmt.Errorf("outbox %s/%s: corrupt message: %w", org, node, err)
				}
				return fn(org, node, m)
			})
		})
	})
}
