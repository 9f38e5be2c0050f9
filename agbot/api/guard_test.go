package api

import (
	"net/http"
	"testing"
)

// TestClientAddr: the throttling key of a source is its IP; IPv6 clients are keyed by their
// /64 (one host has a whole /64 to pick addresses from); a v4-mapped address is the v4 one.
func TestClientAddr(t *testing.T) {
	for _, c := range []struct{ name, remote, want string }{
		{"ipv4", "192.0.2.7:4242", "192.0.2.7"},
		{"ipv4 mapped in ipv6", "[::ffff:192.0.2.7]:4242", "192.0.2.7"},
		{"ipv6 keyed by its /64", "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:4242", "2001:db8:1:2::/64"},
		{"another host of the same /64", "[2001:db8:1:2::1]:1", "2001:db8:1:2::/64"},
		{"no port", "192.0.2.7", "192.0.2.7"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := clientAddr(&http.Request{RemoteAddr: c.remote}); got != c.want {
				t.Errorf("clientAddr(%q) = %q, want %q", c.remote, got, c.want)
			}
		})
	}
}
