package access

import (
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// TestLimiter: Free failures pass, then each further one doubles the wait up to Max;
// failures are forgotten one per Decay; keys are independent; past Keys keys a new one is
// not tracked; a key with failures has at most its remaining allowance in flight.
func TestLimiter(t *testing.T) {
	p := LimitPolicy{Free: 3, Base: time.Second, Max: 10 * time.Second, Decay: time.Minute, Keys: 4}
	type step struct {
		advance time.Duration
		fail    string        // key of an attempt that fails
		hold    string        // key of an attempt left in flight
		key     string        // key whose next attempt is tried (and ended as a success)
		want    time.Duration // the wait that attempt is told
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"free failures do not wait", []step{{fail: "a", key: "a"}, {fail: "a", key: "a"}, {fail: "a", key: "a"}}},
		{"doubling then capped", []step{
			{fail: "a"}, {fail: "a"}, {fail: "a"},
			{fail: "a", key: "a", want: time.Second},
			{advance: time.Second, fail: "a", key: "a", want: 2 * time.Second},
			{advance: 2 * time.Second, fail: "a", key: "a", want: 4 * time.Second},
			{advance: 4 * time.Second, fail: "a", key: "a", want: 8 * time.Second},
			{advance: 8 * time.Second, fail: "a", key: "a", want: 10 * time.Second},
			{advance: 10 * time.Second, fail: "a", key: "a", want: 10 * time.Second},
			{advance: 4 * time.Second, key: "a", want: 6 * time.Second},
			{advance: 6 * time.Second, key: "a"},
		}},
		{"a refused attempt is not counted", []step{
			{fail: "a"}, {fail: "a"}, {fail: "a"}, {fail: "a"},
			{fail: "a"}, {fail: "a"}, {fail: "a"}, // refused: still 1s
			{advance: time.Second, fail: "a", key: "a", want: 2 * time.Second},
		}},
		{"keys are independent", []step{{fail: "a"}, {fail: "a"}, {fail: "a"}, {fail: "a", key: "b"}}},
		{"decay forgets one failure a minute", []step{
			{fail: "a"}, {fail: "a"}, {fail: "a"},
			{advance: 2 * time.Minute, fail: "a", key: "a"}, // 3-2+1 = 2 failures: free
			{fail: "a", key: "a"},                           // 3
			{fail: "a", key: "a", want: time.Second},        // 4
		}},
		{"past Keys a new key is not tracked", []step{
			{fail: "k1"}, {fail: "k2"}, {fail: "k3"}, {fail: "k4"},
			{fail: "k5"}, {fail: "k5"}, {fail: "k5"}, {fail: "k5", key: "k5"},
		}},
		{"forgotten keys make room", []step{
			{fail: "k1"}, {fail: "k2"}, {fail: "k3"}, {fail: "k4"},
			{advance: 2 * time.Minute},
			{fail: "k5"}, {fail: "k5"}, {fail: "k5"}, {fail: "k5", key: "k5", want: time.Second},
		}},
		{"in flight: no more than the allowance left", []step{
			{fail: "a"}, {hold: "a"}, {hold: "a"}, {hold: "a", key: "a", want: time.Second},
		}},
		{"in flight: one at a time once it is used up", []step{
			{fail: "a"}, {fail: "a"}, {fail: "a"}, {fail: "a"}, {advance: time.Second},
			{hold: "a", key: "a", want: time.Second},
		}},
		{"in flight: a key without failures is not held back", []step{
			{hold: "a"}, {hold: "a"}, {hold: "a"}, {hold: "a"}, {hold: "a", key: "a"},
		}},
	}
	bounded := p
	bounded.BoundClean = true
	boundedCases := []struct {
		name  string
		steps []step
	}{
		{"bound clean: Free+1 in flight without failures", []step{
			{hold: "a"}, {hold: "a"}, {hold: "a"}, {hold: "a", key: "a", want: time.Second},
		}},
		{"bound clean: successes leave nothing behind", []step{
			{key: "a"}, {key: "a"}, {key: "a"}, {key: "a"}, {key: "a"}, {key: "b"},
		}},
		{"bound clean: failures still count", []step{
			{fail: "a"}, {fail: "a"}, {fail: "a"}, {fail: "a", key: "a", want: time.Second},
		}},
	}
	run := func(p LimitPolicy, c struct {
		name  string
		steps []step
	}) {
		t.Run(c.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1e9, 0)}
			l := NewLimiter(p, clk.now)
			for i, s := range c.steps {
				clk.t = clk.t.Add(s.advance)
				if s.fail != "" {
					if a, d := l.Begin(s.fail); d == 0 {
						a.End(true)
					}
				}
				if s.hold != "" {
					l.Begin(s.hold)
				}
				if s.key == "" {
					continue
				}
				a, got := l.Begin(s.key)
				if got != s.want {
					t.Errorf("step %d: %s waits %v, want %v", i, s.key, got, s.want)
				}
				if got == 0 {
					a.End(false)
				}
			}
			if c.name == "bound clean: successes leave nothing behind" && len(l.m) != 0 {
				t.Errorf("%d keys tracked after successes only", len(l.m))
			}
		})
	}
	for _, c := range cases {
		run(p, c)
	}
	for _, c := range boundedCases {
		run(bounded, c)
	}
}
