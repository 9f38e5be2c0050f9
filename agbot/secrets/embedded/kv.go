package embedded

import (
	"bytes"
	"encoding/binary"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// kv is where the manager keeps sealed records: a bbolt file, or PostgreSQL tables shared by
// the agbots of a fleet. update's transactions are serialised; a failing fn changes nothing.
type kv interface {
	update(fn func(kvTx) error) error
	view(fn func(kvTx) error) error
	close() error
}

type kvTx interface {
	get(org, name string) ([]byte, error) // nil, nil when absent
	// put stores the sealed record and records version as the name's last.
	put(org, name string, sealed []byte, version uint64) error
	del(org, name string) (bool, error)
	version(org, name string) (uint64, error) // 0: never written
	names(org, prefix string) ([]string, error)
	check() ([]byte, error)
	setCheck(sealed []byte) error
}

type boltKV struct{ db *bolt.DB }

func newBoltKV(db *bolt.DB) (*boltKV, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSecrets, bucketVersions, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	return &boltKV{db: db}, err
}

func (b *boltKV) update(fn func(kvTx) error) error {
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b *boltKV) view(fn func(kvTx) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b *boltKV) close() error { return b.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) get(org, name string) ([]byte, error) {
	recs := t.tx.Bucket(bucketSecrets).Bucket([]byte(org))
	if recs == nil {
		return nil, nil
	}
	return bytes.Clone(recs.Get([]byte(name))), nil
}

func (t boltTx) put(org, name string, sealed []byte, version uint64) error {
	recs, err := t.tx.Bucket(bucketSecrets).CreateBucketIfNotExists([]byte(org))
	if err != nil {
		return err
	}
	vers, err := t.tx.Bucket(bucketVersions).CreateBucketIfNotExists([]byte(org))
	if err != nil {
		return err
	}
	if err := recs.Put([]byte(name), sealed); err != nil {
		return err
	}
	return vers.Put([]byte(name), binary.BigEndian.AppendUint64(nil, version))
}

func (t boltTx) del(org, name string) (bool, error) {
	recs := t.tx.Bucket(bucketSecrets).Bucket([]byte(org))
	if recs == nil || recs.Get([]byte(name)) == nil {
		return false, nil
	}
	return true, recs.Delete([]byte(name))
}

func (t boltTx) version(org, name string) (uint64, error) {
	vers := t.tx.Bucket(bucketVersions).Bucket([]byte(org))
	if vers == nil {
		return 0, nil
	}
	if last := vers.Get([]byte(name)); len(last) == 8 {
		return binary.BigEndian.Uint64(last), nil
	}
	return 0, nil
}

func (t boltTx) names(org, prefix string) ([]string, error) {
	recs := t.tx.Bucket(bucketSecrets).Bucket([]byte(org))
	if recs == nil {
		return nil, nil
	}
	var out []string
	c := recs.Cursor()
	for k, _ := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, _ = c.Next() {
		out = append(out, string(k))
	}
	return out, nil
}

func (t boltTx) check() ([]byte, error) {
	return bytes.Clone(t.tx.Bucket(bucketMeta).Get(keyCheck)), nil
}

func (t boltTx) setCheck(sealed []byte) error { return t.tx.Bucket(bucketMeta).Put(keyCheck, sealed) }
