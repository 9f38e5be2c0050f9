package agreement

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/edge-secrets/anax-agent/protocol"
)

// DefaultStateDir is where the agent keeps its state DB and digest key.
const DefaultStateDir = "/var/lib/anax-agent"

const (
	dbFile        = "agreements.db"
	schemaVersion = "1"
)

var (
	bucketMeta       = []byte("meta")
	bucketAgreements = []byte("agreements")
	bucketEnded      = []byte("ended")
	keySchema        = []byte("schema")
)

// Phase is where an agreement stands in its life cycle.
type Phase string

const (
	// PhaseAccepting: a proposal is being accepted; stores or containers may be half made.
	// Found at start-up, it means the agent died before replying: undo it.
	PhaseAccepting Phase = "accepting"
	// PhaseActive: accepted, containers running with their secrets.
	PhaseActive Phase = "active"
	// PhaseResync: the secrets on the node were lost (reboot) or may not match the state
	// (the agent died during an update): the agent asked the agbot for the current values
	// and waits for them before it (re)starts the containers.
	PhaseResync Phase = "resync"
	// PhaseCancelling: a cancel started; containers and stores are being removed.
	PhaseCancelling Phase = "cancelling"
)

// record is one agreement as persisted. It must never hold a secret value: the service
// declaration carries none (values travel beside it in the proposal) and secrets are kept as
// digests. It does hold the agreement's key, which opens the agreement's later messages in
// transit: key material like the node's private keys beside it in the state dir (0600).
type record struct {
	ID string `json:"id"`
	// Instance names the agreement on the node: containers, labels, store ids.
	Instance string `json:"instance"`
	Agbot    string `json:"agbot"` // the proposal's sender
	// AgreementKey is the key the proposal carried (protocol.FeatureAgreementKeys): the
	// agreement's other messages, both ways, are sealed with it. Empty from an older agbot.
	AgreementKey protocol.AgreementKey `json:"agreementKey,omitempty"`
	Node         string                `json:"node"` // the proposal's recipient: this node's id
	Phase        Phase                 `json:"phase"`
	// Service is the declaration from the proposal: needed to start the containers again
	// after a reboot.
	Service protocol.Service `json:"service"`
	// Sequence is the last applied sequence number.
	Sequence uint64 `json:"sequence"`
	// Digests of the current secret values by service secret name.
	Digests map[string]string `json:"digests"`
	// SecretSeq is, per secret, the sequence of the message that set its current value. An
	// update changes only the secrets it is newer for, so a late update (one that failed and
	// is retried after a later one applied) is not lost, and a replay changes nothing.
	SecretSeq map[string]uint64 `json:"secretSeq"`
	// Uncertain names secrets whose swap may have been under way when the agent died: each
	// holds its old or its new value, and its digest may be the old one. The agent asks the
	// agbot for current values (resync) and forgets a name once a value for it is applied.
	Uncertain  []string          `json:"uncertain,omitempty"`
	Containers []containerRecord `json:"containers"`
	// Env is set in every container: the platform's HZN_* variables, fixed when the
	// agreement was accepted. Inputs is the user input of each container's service, by
	// container name. Neither is a secret.
	Env    map[string]string            `json:"env,omitempty"`
	Inputs map[string]map[string]string `json:"inputs,omitempty"`
	// AllowPrivileged is the node policy's openhorizon.allowPrivileged when the agreement was
	// accepted: a privileged service keeps running across agent restarts.
	AllowPrivileged bool      `json:"allowPrivileged,omitempty"`
	AcceptedAt      time.Time `json:"acceptedAt"`
	UpdatedAt       time.Time `json:"updatedAt"`
	// Note is the last thing an operator should know: why a resync was asked, the last
	// refused update, a failed onUpdate action.
	Note string `json:"note,omitempty"`
}

// containerRecord is one container of the agreement's service and its secret store.
type containerRecord struct {
	Name        string `json:"name"`              // key in Deployment.Services
	StoreID     string `json:"storeID,omitempty"` // "" when the container declares no secret
	ContainerID string `json:"containerID,omitempty"`
	UID         int    `json:"uid"`
	GID         int    `json:"gid"`
}

// db is the bbolt state file. Every method is one bbolt transaction, fsynced on commit.
type db struct {
	bolt *bolt.DB
	// keys remembers each agreement's agbot and key as last written or read, so that the
	// message loop's lookups (one per message opened and per reply sealed) decode no record.
	keys struct {
		sync.Mutex
		m map[string]keyEntry
	}
}

type keyEntry struct {
	agbot string
	key   protocol.AgreementKey
}

// ErrStateLocked: another process holds the state DB (a second agent with the same state dir).
var ErrStateLocked = errors.New("state DB is locked by another process")

func openDB(dir string) (*db, error) {
	path := filepath.Join(dir, dbFile)
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("state DB %s: %w", path, ErrStateLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("state DB %s: %w", path, err)
	}
	// bbolt creates the file with the mode given only when it is new; tighten an old one.
	if err := os.Chmod(path, 0o600); err != nil {
		b.Close()
		return nil, fmt.Errorf("state DB %s: %w", path, err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keySchema); v != nil && string(v) != schemaVersion {
			return fmt.Errorf("schema version %q, this agent reads %q", v, schemaVersion)
		}
		if err := meta.Put(keySchema, []byte(schemaVersion)); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketAgreements); err != nil {
			return err
		}
		_, err = tx.CreateBucketIfNotExists(bucketEnded)
		return err
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("state DB %s: %w", path, err)
	}
	d := &db{bolt: b}
	d.keys.m = map[string]keyEntry{}
	return d, nil
}

func (d *db) close() error { return d.bolt.Close() }

// get returns the agreement or nil when it is not known.
func (d *db) get(id string) (*record, error) {
	var r *record
	err := d.bolt.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketAgreements).Get([]byte(id))
		if raw == nil {
			return nil
		}
		r = new(record)
		return json.Unmarshal(raw, r)
	})
	if err != nil {
		return nil, fmt.Errorf("state DB: agreement %q: %w", id, err)
	}
	return r, nil
}

func (d *db) put(r *record) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	err = d.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAgreements).Put([]byte(r.ID), raw)
	})
	if err != nil {
		return fmt.Errorf("state DB: save agreement %q: %w", r.ID, err)
	}
	d.keys.Lock()
	d.keys.m[r.ID] = keyEntry{agbot: r.Agbot, key: r.AgreementKey}
	d.keys.Unlock()
	return nil
}

// agreementKey returns the agbot and key of agreement id; ok is false when it is not known.
// A miss reads the record under the lock, so that a concurrent end or remove, which drops
// the entry after its commit, can not leave a stale one behind.
func (d *db) agreementKey(id string) (agbot string, key protocol.AgreementKey, ok bool) {
	d.keys.Lock()
	defer d.keys.Unlock()
	if e, hit := d.keys.m[id]; hit {
		return e.agbot, e.key, true
	}
	r, err := d.get(id)
	if err != nil || r == nil {
		return "", nil, false
	}
	d.keys.m[id] = keyEntry{agbot: r.Agbot, key: r.AgreementKey}
	return r.Agbot, r.AgreementKey, true
}

// forgetKey drops agreement id's entry, after the transaction that deleted it.
func (d *db) forgetKey(id string) {
	d.keys.Lock()
	delete(d.keys.m, id)
	d.keys.Unlock()
}

// ended is the tombstone of an agreement that ended: a replayed proposal for it is refused.
type ended struct {
	Sequence uint64    `json:"sequence"`
	At       time.Time `json:"at"`
}

// end deletes the agreement and leaves its tombstone, in one transaction.
func (d *db) end(id string, e ended) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	err = d.bolt.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketAgreements).Delete([]byte(id)); err != nil {
			return err
		}
		return tx.Bucket(bucketEnded).Put([]byte(id), raw)
	})
	d.forgetKey(id)
	if err != nil {
		return fmt.Errorf("state DB: delete agreement %q: %w", id, err)
	}
	return nil
}

// tombstones returns the tombstones newer than since and deletes the older ones.
func (d *db) tombstones(since time.Time) (map[string]ended, error) {
	out := map[string]ended{}
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEnded)
		var old [][]byte
		err := b.ForEach(func(k, raw []byte) error {
			var e ended
			if err := json.Unmarshal(raw, &e); err != nil || e.At.Before(since) {
				old = append(old, append([]byte(nil), k...))
				return nil
			}
			out[string(k)] = e
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state DB: tombstones: %w", err)
	}
	return out, nil
}

// list returns every agreement, sorted by id.
func (d *db) list() ([]*record, error) {
	var out []*record
	err := d.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAgreements).ForEach(func(k, raw []byte) error {
			r := new(record)
			if err := json.Unmarshal(raw, r); err != nil {
				return fmt.Errorf("agreement %q: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state DB: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// prepareStateDir creates dir with mode 0700, or tightens an existing one.
func prepareStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state dir %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("state dir %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("state dir %s: not a directory", dir)
	}
	if st.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("state dir %s: %w", dir, err)
		}
	}
	return nil
}

// remove deletes an agreement that never became active (an undone proposal): no tombstone.
func (d *db) remove(id string) error {
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAgreements).Delete([]byte(id))
	})
	d.forgetKey(id)
	if err != nil {
		return fmt.Errorf("state DB: delete agreement %q: %w", id, err)
	}
	return nil
}
