package input

import (
	"net/netip"
	"testing"
)

func TestClientAddress(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	unknown := netip.IPv6Unspecified()
	for _, tt := range []struct {
		name   string
		peer   string
		xff    []string
		want   netip.Addr
		trusts []netip.Prefix
	}{
		{"a direct client", "203.0.113.5:4711", nil, netip.MustParseAddr("203.0.113.5"), nil},
		{"a forged header from an untrusted peer", "203.0.113.5:4711", []string{"10.1.2.3"}, netip.MustParseAddr("203.0.113.5"), proxies},
		{"an unreadable peer", "somewhere", nil, unknown, proxies},
		{"a trusted proxy without the header", "10.0.0.2:443", nil, netip.MustParseAddr("10.0.0.2"), proxies},
		{"through a trusted proxy", "10.0.0.2:443", []string{"203.0.113.5"}, netip.MustParseAddr("203.0.113.5"), proxies},
		{"the nearest untrusted hop", "10.0.0.2:443", []string{"198.51.100.1, 203.0.113.5, 10.0.0.9"}, netip.MustParseAddr("203.0.113.5"), proxies},
		{"hops in several headers", "10.0.0.2:443", []string{"198.51.100.1", "203.0.113.5"}, netip.MustParseAddr("203.0.113.5"), proxies},
		{"a hop with a port", "10.0.0.2:443", []string{"203.0.113.5:4711"}, netip.MustParseAddr("203.0.113.5"), proxies},
		{"an IPv6 hop with a port", "10.0.0.2:443", []string{"[2001:db8::1]:4711"}, netip.MustParseAddr("2001:db8::1"), proxies},
		{"an IPv4-mapped hop", "10.0.0.2:443", []string{"::ffff:203.0.113.5"}, netip.MustParseAddr("203.0.113.5"), proxies},
		// A hop that reads as no address leaves the client unknown: never the proxy's own
		// address, which may lie in a key's networks.
		{"an unknown hop", "10.0.0.2:443", []string{"203.0.113.5, unknown"}, unknown, proxies},
		{"an empty header", "10.0.0.2:443", []string{""}, unknown, proxies},
		{"an empty hop", "10.0.0.2:443", []string{"203.0.113.5,"}, unknown, proxies},
		{"garbage", "10.0.0.2:443", []string{"10.0.0.1/8"}, unknown, proxies},
		{"an unknown hop behind a trusted one", "10.0.0.2:443", []string{"unknown, 10.0.0.7"}, unknown, proxies},
		// Hops beyond the first untrusted one are the client's to write, and never read.
		{"garbage the client wrote", "10.0.0.2:443", []string{"unknown, 203.0.113.5"}, netip.MustParseAddr("203.0.113.5"), proxies},
	} {
		if got := ClientAddress(tt.peer, tt.xff, tt.trusts); got != tt.want {
			t.Errorf("%s: ClientAddress(%q, %q) = %v, want %v", tt.name, tt.peer, tt.xff, got, tt.want)
		}
	}
}
