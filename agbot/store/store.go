// Package store keeps the agbot's state: orgs, users, nodes, services, deployment policies,
// patterns, agreements and the per-node outbox of sealed messages awaiting acknowledgement.
// Records are JSON (anax shapes for the exchange ones). The state never holds a secret value
// in clear: the outbox holds envelopes sealed to each node.
//
// Two backends implement the same Store: one bbolt file (Open, the zero-setup default) and a
// PostgreSQL database (OpenPostgres), which several agbots of one fleet may share. Callers
// see only Store, Table and Tx: a transaction is opaque and passed back to the *Tx methods.
// Imported by the agbot's packages only.
package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/exchange"
)

// Sentinels.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// Tx is one transaction of a Store, given to the fn of Update or View. Only the store's own
// *Tx methods use it; a read-only Tx refuses writes.
type Tx interface {
	get(table string, key []byte) ([]byte, error) // nil, nil when absent
	put(table string, key, val []byte) error
	del(table string, key []byte) (bool, error)
	each(table string, prefix []byte, fn func(key, val []byte) error) error // key order
	enqueue(org, node string, m *Message) error                             // assigns m.ID
	remove(org, node string, id uint64) (bool, error)
	dropNode(org, node string) error
	outbox(fn func(org, node string, raw []byte) error) error // node key order, then id order
	meta(key string) ([]byte, error)
	setMeta(key string, val []byte) error
}

// backend is what a storage engine provides: transactions. Update's transactions are
// serialised (one writer at a time, across every agbot sharing the backend); View's see a
// consistent snapshot. A failing fn changes nothing.
type backend interface {
	update(fn func(Tx) error) error
	view(fn func(Tx) error) error
	close() error
}

// Store is the agbot's state.
type Store struct {
	be backend

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

func newStore(be backend) *Store {
	s := &Store{be: be}
	s.Orgs = NewTable[Org](s, "orgs")
	s.Users = NewTable[exchange.User](s, "users")
	s.Nodes = NewTable[exchange.Node](s, "nodes")
	s.Services = NewTable[exchange.Service](s, "services")
	s.Policies = NewTable[exchange.Policy](s, "policies")
	s.Patterns = NewTable[exchange.Pattern](s, "patterns")
	return s
}

// Close closes the store.
func (s *Store) Close() error { return s.be.close() }

// Update runs fn in one read-write transaction: all of it or, if fn fails, none of it.
func (s *Store) Update(fn func(tx Tx) error) error { return s.be.update(fn) }

// View runs fn in one read-only transaction.
func (s *Store) View(fn func(tx Tx) error) error { return s.be.view(fn) }

// Meta reads a metadata value (nil if unset).
func (s *Store) Meta(key string) (out []byte, err error) {
	err = s.be.view(func(tx Tx) error { out, err = tx.meta(key); return err })
	return out, err
}

// SetMeta writes a metadata value.
func (s *Store) SetMeta(key string, v []byte) error {
	return s.be.update(func(tx Tx) error { return tx.setMeta(key, v) })
}

// Table is a set of JSON records keyed by org and id.
type Table[T any] struct {
	s    *Store
	name string
}

// NewTable declares a table (created on first write).
func NewTable[T any](s *Store, name string) *Table[T] {
	return &Table[T]{s: s, name: name}
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
	err = t.s.be.view(func(tx Tx) error { v, err = t.GetTx(tx, org, id); return err })
	return v, err
}

// GetTx reads one record inside tx.
func (t *Table[T]) GetTx(tx Tx, org, id string) (T, error) {
	var v T
	err := t.decodeTx(tx, org, id, &v)
	return v, err
}

// decodeTx decodes the record under org and id into v (a *T or a projection of T).
func (t *Table[T]) decodeTx(tx Tx, org, id string, v any) error {
	raw, err := tx.get(t.name, Key(org, id))
	switch {
	case err != nil:
		return fmt.Errorf("%s %s/%s: %w", t.name, org, id, err)
	case raw == nil:
		return fmt.Errorf("%s %s/%s: %w", t.name, org, id, ErrNotFound)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s %s/%s: corrupt record: %w", t.name, org, id, err)
	}
	return nil
}

// Part reads one record of t into P, a projection of T: a struct whose fields carry the
// JSON names and types of some of T's fields. What P does not name is skipped, not decoded
// (exchange.NodeAccess leaves out a node's keys). A test of each projection keeps its
// fields T's.
func Part[P, T any](t *Table[T], org, id string) (v P, err error) {
	err = t.s.be.view(func(tx Tx) error { return t.decodeTx(tx, org, id, &v) })
	return v, err
}

// Put creates or replaces a record.
func (t *Table[T]) Put(org, id string, v T) error {
	return t.s.be.update(func(tx Tx) error { return t.PutTx(tx, org, id, v) })
}

// PutTx creates or replaces a record inside tx.
func (t *Table[T]) PutTx(tx Tx, org, id string, v T) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.put(t.name, Key(org, id), raw)
}

// Create stores a record only if none exists under the key.
func (t *Table[T]) Create(org, id string, v T) error {
	return t.s.be.update(func(tx Tx) error {
		raw, err := tx.get(t.name, Key(org, id))
		if err != nil {
			return err
		}
		if raw != nil {
			return fmt.Errorf("%s %s/%s: %w", t.name, org, id, ErrExists)
		}
		return t.PutTx(tx, org, id, v)
	})
}

// Delete removes a record; ErrNotFound if there was none.
func (t *Table[T]) Delete(org, id string) error {
	return t.s.be.update(func(tx Tx) error { return t.DeleteTx(tx, org, id) })
}

// DeleteTx removes a record inside tx; ErrNotFound if there was none.
func (t *Table[T]) DeleteTx(tx Tx, org, id string) error {
	ok, err := tx.del(t.name, Key(org, id))
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w", t.name, org, id, err)
	}
	if !ok {
		return fmt.Errorf("%s %s/%s: %w", t.name, org, id, ErrNotFound)
	}
	return nil
}

// List returns the records of an org ("" for every org) in key order.
func (t *Table[T]) List(org string) (out []T, err error) {
	err = t.s.be.view(func(tx Tx) error {
		return t.EachTx(tx, org, func(_, _ string, v T) error { out = append(out, v); return nil })
	})
	return out, err
}

// EachTx calls fn for each record of an org ("" for every org) inside tx, in key order
// (org, then id, bytewise).
func (t *Table[T]) EachTx(tx Tx, org string, fn func(org, id string, v T) error) error {
	var prefix []byte
	if org != "" {
		prefix = Key(org, "")
	}
	return tx.each(t.name, prefix, func(k, raw []byte) error {
		var v T
		o, id := SplitKey(k)
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("%s %s/%s: corrupt record: %w", t.name, o, id, err)
		}
		return fn(o, id, v)
	})
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

// EnqueueTx appends m to the outbox of node (key org/node) inside tx, assigning m.ID: one
// more than any id the node's outbox has held since it was last dropped.
func (s *Store) EnqueueTx(tx Tx, org, node string, m *Message) error {
	if err := tx.enqueue(org, node, m); err != nil {
		return fmt.Errorf("outbox of %s/%s: enqueue: %w", org, node, err)
	}
	return nil
}

// RemoveTx drops message id from node's outbox; it reports whether it was there.
func (s *Store) RemoveTx(tx Tx, org, node string, id uint64) (bool, error) {
	ok, err := tx.remove(org, node, id)
	if err != nil {
		return false, fmt.Errorf("outbox of %s/%s: remove %d: %w", org, node, id, err)
	}
	return ok, nil
}

// DropNodeTx removes a node's whole outbox (node deleted).
func (s *Store) DropNodeTx(tx Tx, org, node string) error {
	if err := tx.dropNode(org, node); err != nil {
		return fmt.Errorf("outbox of %s/%s: drop: %w", org, node, err)
	}
	return nil
}

// Outbox calls fn for every queued message of every node, in id order per node: used to
// rebuild the in-memory queues after a restart.
func (s *Store) Outbox(fn func(org, node string, m Message) error) error {
	return s.be.view(func(tx Tx) error {
		return tx.outbox(func(org, node string, raw []byte) error {
			var m Message
			if err := json.Unmarshal(raw, &m); err != nil {
				return fmt.Errorf("outbox %s/%s: corrupt message: %w", org, node, err)
			}
			return fn(org, node, m)
		})
	})
}

// encodeMessage is the stored form of m (its ID already assigned).
func encodeMessage(m *Message) ([]byte, error) { return json.Marshal(m) }
