package input

import (
	"net/netip"
	"strings"
)

// ClientAddress is the address a request comes from: the peer (remoteAddr, "host:port"), or,
// when the peer is one of the trusted proxies, the nearest hop of X-Forwarded-For (the header's
// values, in order) that is not one. The token endpoint and the admin API both read the address
// through it, so a key's networks hold the same way on both. An unreadable peer is the
// unspecified address, which no network a key names contains.
func ClientAddress(remoteAddr string, forwardedFor []string, trustedProxies []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.IPv6Unspecified()
	}
	addr := peer.Addr().Unmap()
	if !trusted(trustedProxies, addr) {
		return addr
	}
	hops := strings.Split(strings.Join(forwardedFor, ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		addr = hop.Unmap()
		if !trusted(trustedProxies, addr) {
			break
		}
	}
	return addr
}

func trusted(proxies []netip.Prefix, a netip.Addr) bool {
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
