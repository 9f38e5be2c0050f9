package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkSecretToContainer measures design §9's first figure on loopback: from the moment a
// secret's new value is written to the agbot's API until a process in the running container
// reads it at /<name>. Each iteration starts a reader watching the file inside the container
// (timer stopped), writes the value (timer running) and waits for the reader to see it. It
// reports the latency percentiles over the iterations; run it with a count of iterations:
//
//	go test ./test/e2e/ -run '^$' -bench SecretToContainer -benchtime 200x
func BenchmarkSecretToContainer(b *testing.B) {
	s := getSuite(b)
	e := s.newEnv(b, "bench", nil)
	_, _, c, _, _ := single(b, e, "", "bench")
	put := func(v string) {
		code, err := e.agbot.Do(org+"/"+e.agbot.Admin, "PUT", "/org/"+org+"/secrets/db", map[string]string{"key": "dbkey", "value": v}, nil)
		if err != nil || code != 201 {
			b.Fatalf("PUT secret: %d %v", code, err)
		}
	}
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		v := s.canaries.Next(fmt.Sprintf("bench-%d", i))
		b.StopTimer()
		wait, err := Watch(e.ctx, s.docker, c, "/db_password", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		put(v)
		ch, err := wait()
		if err != nil {
			b.Fatal(err)
		}
		if ch.Content != file("dbkey", v, "") || ch.Bad != 0 {
			b.Fatalf("iteration %d: the container read %s with %d bad reads", i, s.canaries.Describe(ch.Content), ch.Bad)
		}
		lat = append(lat, time.Unix(0, ch.SeenAt).Sub(start))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
