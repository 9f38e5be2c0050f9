package access

import (
	"fmt"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// TestLimiter: Free failures pass, then each further one doubles the wait up to Max;
// failures are forgotten one per Decay; keys are independent; past Keys keys a new one is
// not tracked.
func TestLimiter(t *testing.T) {
	p := LimitPolicy{Free: 3, Base: time.Second, Max: 10 * time.Second, Decay: time.Minute, Keys: 4}
	type step struct {
		advance time.Duration
		fail    string // key to fail; "" none
		key     string // key whose wait is checked
		want    time.Duration
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"free failures do not wait", []step{{fail: "a", key: "a"}, {fail: "a", key: "a"}, {fail: "a", key: "a"}}},
		{"doubling then capped", []step{
			{fail: "a"}, {fail: "a"}, {fail: "a"},
			{fail: "a", key: "a", want: time.Second},
			{fail: "a", key: "a", want: 2 * time.Second},
			{fail: "a", key: "a", want: 4 * time.Second},
			{fail: "a", key: "a", want: 8 * time.Second},
			{fail: "a", key: "a", want: 10 * time.Second},
			{fail: "a", key: "a", want: 10 * time.Second},
			{advance: 4 * time.Second, key: "a", want: 6 * time.Second},
			{advance: 6 * time.Second, key: "a"},
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
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1e9, 0)}
			l := NewLimiter(p, clk.now)
			for i, s := range c.steps {
				clk.t = clk.t.Add(s.advance)
				if s.fail != "" {
					l.Fail(s.fail)
				}
				if s.key == "" {
					continue
				}
				if got := l.Wait(s.key); got != s.want {
					t.Errorf("%s: step %d: Wait(%s) = %v, want %v", fmt.Sprint(c.name), i, s.key, got, s.want)
				}
			}
		})
	}
}
