package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/test/postgrestest"
)

// backend opens a fresh, empty store for a test; again, when not nil, opens another handle
// on the same data (a second agbot on the same database).
type backend func(t *testing.T) (s *store.Store, again func() *store.Store)

func boltBackend(t *testing.T) (*store.Store, func() *store.Store) {
	s, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, nil
}

// postgresBackend gives each test a database of its own on pg.
func postgresBackend(pg *postgrestest.Server) backend {
	return func(t *testing.T) (*store.Store, func() *store.Store) {
		url := pg.NewDatabase(t)
		open := func() *store.Store {
			s, err := store.OpenPostgres(context.Background(), store.PostgresOptions{URL: url, Password: pg.Password})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open
	}
}

func TestConformance(t *testing.T) {
	t.Run("bbolt", func(t *testing.T) { conformance(t, boltBackend) })
	t.Run("postgres", func(t *testing.T) {
		pg := postgrestest.Start(t)
		conformance(t, postgresBackend(pg))
		t.Run("migrate together", func(t *testing.T) { testMigrateTogether(t, pg) })
		t.Run("lease", func(t *testing.T) { testLease(t, postgresBackend(pg)) })
	})
}

// testMigrateTogether: agbots starting at once on an empty database apply each schema step
// once, and all of them open.
func testMigrateTogether(t *testing.T, pg *postgrestest.Server) {
	url := pg.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := store.OpenPostgres(context.Background(), store.PostgresOptions{URL: url, Password: pg.Password})
			if err == nil {
				s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s, err := store.OpenPostgres(context.Background(), store.PostgresOptions{URL: url, Password: pg.Password})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n, max int
	err = s.Pool().QueryRow(context.Background(), "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &max)
	if err != nil || n != store.SchemaVersion() || max != store.SchemaVersion() {
		t.Fatalf("schema_migrations: %d rows, max %d, %v; want %d once each", n, max, err, store.SchemaVersion())
	}
}

type rec struct {
	Org, ID string
	N       int
}

func conformance(t *testing.T, be backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *store.Store, again func() *store.Store)
	}{
		{"get put", testGetPut},
		{"part", testPart},
		{"create", testCreate},
		{"delete", testDelete},
		{"list order", testListOrder},
		{"outbox", testOutbox},
		{"outbox drop", testOutboxDrop},
		{"meta", testMeta},
		{"release mapped", testReleaseMapped},
		{"atomic", testAtomic},
		{"concurrent writers", testConcurrentWriters},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, again := be(t)
			tc.fn(t, s, again)
		})
	}
}

func testGetPut(t *testing.T, s *store.Store, _ func() *store.Store) {
	tb := store.NewTable[rec](s, "recs")
	if _, err := tb.Get("o", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of nothing: %v, want ErrNotFound", err)
	}
	for _, n := range []int{1, 2} { // put, then replace
		if err := tb.Put("o", "x", rec{"o", "x", n}); err != nil {
			t.Fatal(err)
		}
		if got, err := tb.Get("o", "x"); err != nil || got.N != n {
			t.Fatalf("Get = %+v, %v; want N=%d", got, err, n)
		}
	}
	other := store.NewTable[rec](s, "others")
	if _, err := other.Get("o", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a record leaked into another table: %v", err)
	}
}

// testPart reads a projection of a record: the fields it names, nothing else, and the
// same errors as Get.
func testPart(t *testing.T, s *store.Store, _ func() *store.Store) {
	type part struct{ N int } // rec's N, not its Org and ID
	tb := store.NewTable[rec](s, "recs")
	if _, err := store.Part[part](tb, "o", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Part of nothing: %v, want ErrNotFound", err)
	}
	if err := tb.Put("o", "x", rec{"o", "x", 7}); err != nil {
		t.Fatal(err)
	}
	if got, err := store.Part[part](tb, "o", "x"); err != nil || got.N != 7 {
		t.Fatalf("Part = %+v, %v; want N=7", got, err)
	}
	if _, err := store.Part[part](store.NewTable[rec](s, "others"), "o", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Part read another table's record: %v", err)
	}
}

func testCreate(t *testing.T, s *store.Store, _ func() *store.Store) {
	tb := store.NewTable[rec](s, "recs")
	if err := tb.Create("o", "x", rec{N: 1}); err != nil {
		t.Fatal(err)
	}
	if err := tb.Create("o", "x", rec{N: 2}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	if got, _ := tb.Get("o", "x"); got.N != 1 {
		t.Fatalf("a refused Create changed the record: %+v", got)
	}
}

func testDelete(t *testing.T, s *store.Store, _ func() *store.Store) {
	tb := store.NewTable[rec](s, "recs")
	if err := tb.Delete("o", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete of nothing: %v, want ErrNotFound", err)
	}
	if err := tb.Put("o", "x", rec{N: 1}); err != nil {
		t.Fatal(err)
	}
	if err := tb.Delete("o", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Get("o", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	err := s.Update(func(tx store.Tx) error { return tb.DeleteTx(tx, "o", "x") })
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteTx of nothing: %v, want ErrNotFound", err)
	}
}

// testListOrder: key order is org then id, bytewise; an org's listing never includes an org
// it prefixes; ids may hold NUL (the engine's holdings are keyed "name\x00agreement").
func testListOrder(t *testing.T, s *store.Store, _ func() *store.Store) {
	tb := store.NewTable[rec](s, "recs")
	keys := [][2]string{{"b", "a"}, {"ab", "z"}, {"a", "b\x00y"}, {"a", "b"}, {"a", "B"}, {"a", "b\x00x"}, {"a", "é"}, {"a", "a"}}
	for i, k := range keys {
		if err := tb.Put(k[0], k[1], rec{k[0], k[1], i}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		org  string
		want []string
	}{
		{"a", []string{"a/B", "a/a", "a/b", "a/b\x00x", "a/b\x00y", "a/é"}},
		{"ab", []string{"ab/z"}},
		{"", []string{"a/B", "a/a", "a/b", "a/b\x00x", "a/b\x00y", "a/é", "ab/z", "b/a"}},
		{"c", nil},
	}
	for _, tc := range tests {
		t.Run("org="+tc.org, func(t *testing.T) {
			list, err := tb.List(tc.org)
			if err != nil {
				t.Fatal(err)
			}
			var got, each []string
			for _, r := range list {
				got = append(got, r.Org+"/"+r.ID)
			}
			err = s.View(func(tx store.Tx) error {
				return tb.EachTx(tx, tc.org, func(org, id string, _ rec) error { each = append(each, org+"/"+id); return nil })
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) || fmt.Sprintf("%q", each) != fmt.Sprintf("%q", tc.want) {
				t.Fatalf("List = %q, EachTx = %q; want %q", got, each, tc.want)
			}
		})
	}
}

func enqueue(t *testing.T, s *store.Store, org, node, typ string) uint64 {
	t.Helper()
	m := store.Message{Agreement: "ag", Type: typ, Seq: 7, Envelope: []byte{0, 1, 2}, Queued: time.Now().UTC().Truncate(time.Microsecond)}
	if err := s.Update(func(tx store.Tx) error { return s.EnqueueTx(tx, org, node, &m) }); err != nil {
		t.Fatal(err)
	}
	return m.ID
}

func outbox(t *testing.T, s *store.Store) []string {
	t.Helper()
	var out []string
	err := s.Outbox(func(org, node string, m store.Message) error {
		out = append(out, fmt.Sprintf("%s/%s#%d:%s", org, node, m.ID, m.Type))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func testOutbox(t *testing.T, s *store.Store, _ func() *store.Store) {
	var ids []uint64
	for _, k := range [][3]string{{"o", "n1", "a"}, {"o", "n1", "b"}, {"o", "n2", "c"}, {"o", "n1", "d"}, {"o", "n", "e"}} {
		ids = append(ids, enqueue(t, s, k[0], k[1], k[2]))
	}
	if fmt.Sprint(ids) != "[1 2 1 3 1]" {
		t.Fatalf("ids %v, want per-node sequences [1 2 1 3 1]", ids)
	}
	var removed [3]bool
	err := s.Update(func(tx store.Tx) (err error) {
		if removed[0], err = s.RemoveTx(tx, "o", "n1", 2); err != nil {
			return err
		}
		if removed[1], err = s.RemoveTx(tx, "o", "n1", 2); err != nil {
			return err
		}
		removed[2], err = s.RemoveTx(tx, "o", "nobody", 1)
		return err
	})
	if err != nil || removed != [3]bool{true, false, false} {
		t.Fatalf("RemoveTx = %v, %v; want [true false false]", removed, err)
	}
	if id := enqueue(t, s, "o", "n1", "f"); id != 4 {
		t.Fatalf("id after a removal = %d, want 4 (never reused)", id)
	}
	want := "[o/n#1:e o/n1#1:a o/n1#3:d o/n1#4:f o/n2#1:c]"
	if got := fmt.Sprint(outbox(t, s)); got != want {
		t.Fatalf("Outbox = %s, want %s", got, want)
	}
	var m store.Message
	s.Outbox(func(_, _ string, x store.Message) error { m = x; return nil })
	if m.Agreement != "ag" || m.Seq != 7 || string(m.Envelope) != "\x00\x01\x02" || m.Queued.IsZero() {
		t.Fatalf("message read back as %+v", m)
	}
}

func testOutboxDrop(t *testing.T, s *store.Store, _ func() *store.Store) {
	enqueue(t, s, "o", "n1", "a")
	enqueue(t, s, "o", "n1", "b")
	enqueue(t, s, "o", "n2", "c")
	for range 2 { // dropping twice is fine
		if err := s.Update(func(tx store.Tx) error { return s.DropNodeTx(tx, "o", "n1") }); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(outbox(t, s)); got != "[o/n2#1:c]" {
		t.Fatalf("Outbox after drop = %s", got)
	}
	if id := enqueue(t, s, "o", "n1", "d"); id != 1 {
		t.Fatalf("first id after a drop = %d, want 1 (a dropped node starts over)", id)
	}
}

func testMeta(t *testing.T, s *store.Store, _ func() *store.Store) {
	if v, err := s.Meta("k"); err != nil || v != nil {
		t.Fatalf("unset Meta = %q, %v", v, err)
	}
	for _, v := range []string{"one", "two"} {
		if err := s.SetMeta("k", []byte(v)); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Meta("k"); err != nil || string(got) != v {
			t.Fatalf("Meta = %q, %v; want %q", got, err, v)
		}
	}
}

// testReleaseMapped: giving back mapped pages changes no record, also while another reader
// and a writer work, and a store without a mapping accepts the call.
func testReleaseMapped(t *testing.T, s *store.Store, _ func() *store.Store) {
	tb := store.NewTable[rec](s, "recs")
	for i := range 200 {
		if err := tb.Put("o", fmt.Sprintf("r%03d", i), rec{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // a reader and a writer beside the releases
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if r, err := tb.Get("o", fmt.Sprintf("r%03d", i%200)); err != nil || r.N != i%200 {
				t.Errorf("Get r%03d = %+v, %v during releases", i%200, r, err)
				return
			}
			if err := tb.Put("o", fmt.Sprintf("w%03d", i%50), rec{N: i}); err != nil {
				t.Errorf("Put during releases: %v", err)
				return
			}
		}
	})
	for range 20 {
		if err := s.ReleaseMapped(); err != nil {
			t.Fatalf("ReleaseMapped: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	for i := range 200 {
		if r, err := tb.Get("o", fmt.Sprintf("r%03d", i)); err != nil || r.N != i {
			t.Fatalf("after releases Get r%03d = %+v, %v", i, r, err)
		}
	}
}

// testAtomic: a failing transaction leaves records, outbox and meta as they were.
func testAtomic(t *testing.T, s *store.Store, _ func() *store.Store) {
	tb := store.NewTable[rec](s, "recs")
	if err := tb.Put("o", "keep", rec{N: 1}); err != nil {
		t.Fatal(err)
	}
	enqueue(t, s, "o", "n", "a")
	boom := errors.New("boom")
	err := s.Update(func(tx store.Tx) error {
		if err := tb.PutTx(tx, "o", "new", rec{N: 2}); err != nil {
			return err
		}
		if err := tb.PutTx(tx, "o", "keep", rec{N: 3}); err != nil {
			return err
		}
		if err := tb.DeleteTx(tx, "o", "keep"); err != nil {
			return err
		}
		m := store.Message{Type: "b"}
		if err := s.EnqueueTx(tx, "o", "n", &m); err != nil {
			return err
		}
		if _, err := s.RemoveTx(tx, "o", "n", 1); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	if _, err := tb.Get("o", "new"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("record of a failed transaction stored: %v", err)
	}
	if got, err := tb.Get("o", "keep"); err != nil || got.N != 1 {
		t.Errorf("record changed by a failed transaction: %+v, %v", got, err)
	}
	if got := fmt.Sprint(outbox(t, s)); got != "[o/n#1:a]" {
		t.Errorf("outbox changed by a failed transaction: %s", got)
	}
	if id := enqueue(t, s, "o", "n", "c"); id != 2 {
		t.Errorf("the failed transaction's id was consumed: next id %d, want 2", id)
	}
}

// testConcurrentWriters: read-modify-write transactions from many goroutines (and, where the
// backend allows, through a second handle: another agbot) lose no update.
func testConcurrentWriters(t *testing.T, s *store.Store, again func() *store.Store) {
	stores := []*store.Store{s}
	if again != nil {
		stores = append(stores, again())
	}
	const writers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		st := stores[w%len(stores)]
		tb := store.NewTable[rec](st, "counter")
		wg.Go(func() {
			for range rounds {
				err := st.Update(func(tx store.Tx) error {
					c, err := tb.GetTx(tx, "o", "c")
					if err != nil && !errors.Is(err, store.ErrNotFound) {
						return err
					}
					c.N++
					if err := tb.PutTx(tx, "o", "c", c); err != nil {
						return err
					}
					m := store.Message{Type: "x"}
					return st.EnqueueTx(tx, "o", "n", &m)
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := store.NewTable[rec](s, "counter").Get("o", "c")
	if err != nil || got.N != writers*rounds {
		t.Fatalf("counter = %d, %v; want %d", got.N, err, writers*rounds)
	}
	ids := map[uint64]bool{}
	s.Outbox(func(_, _ string, m store.Message) error { ids[m.ID] = true; return nil })
	if len(ids) != writers*rounds {
		t.Fatalf("%d distinct message ids, want %d", len(ids), writers*rounds)
	}
}

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url  string
		want error
	}{
		{"postgres://agbot@db.example:5432/agbot", nil},
		{"postgresql://agbot@127.0.0.1/agbot?sslmode=verify-full", nil},
		{"postgres://agbot:hunter2@db/agbot", store.ErrPasswordInURL},
		{"postgres://agbot:@db/agbot", store.ErrPasswordInURL},
		{"postgres://agbot@db/agbot?password=hunter2", store.ErrPasswordInURL},
		{"mysql://agbot@db/agbot", store.ErrBadURL},
		{"host=db user=agbot", store.ErrBadURL},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			err := store.CheckURL(tc.url)
			if !errors.Is(err, tc.want) {
				t.Fatalf("CheckURL = %v, want %v", err, tc.want)
			}
		})
	}
}
