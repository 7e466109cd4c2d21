package input

import (
	"net/netip"
	"strings"
)

// ClientAddress is the address a request comes from: the peer (remoteAddr, "host:port"), or,
// when the peer is one of the trusted proxies, the nearest hop of X-Forwarded-For (the header's
// values, in order) that is not one. The token endpoint and the admin API both read the address
// through it, so a key's networks hold the same way on both.
//
// A hop is an address, with or without a port ("203.0.113.5:4711", "[2001:db8::1]:4711": some
// proxies write one). An unreadable peer, or a hop that reads as no address ("unknown", an
// empty value), is the unspecified address, which no network a key names contains: the client
// behind it is unknown, and must not be taken for the proxy that forwarded it, whose own
// address may well lie in a key's networks. A trusted proxy that sends no X-Forwarded-For at all
// is the client itself.
func ClientAddress(remoteAddr string, forwardedFor []string, trustedProxies []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.IPv6Unspecified()
	}
	addr := peer.Addr().Unmap()
	if !trusted(trustedProxies, addr) || len(forwardedFor) == 0 {
		return addr
	}
	hops := strings.Split(strings.Join(forwardedFor, ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseHop(strings.TrimSpace(hops[i]))
		if !ok {
			return netip.IPv6Unspecified()
		}
		addr = hop
		if !trusted(trustedProxies, addr) {
			break
		}
	}
	return addr
}

// parseHop reads one hop of X-Forwarded-For: an address, or an address and a port.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

func trusted(proxies []netip.Prefix, a netip.Addr) bool {
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
