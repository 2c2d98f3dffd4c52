package connectors

import (
	"net/netip"
	"strings"
)

// IsLoopback reports whether host (no port; IPv6 without brackets) is
// localhost or a loopback address (127.0.0.0/8, ::1, an IPv4-mapped
// loopback), with no zone. Where the broker allows plain http or plain
// LDAP, it allows it only to such a host.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Zone() == "" && a.Unmap().IsLoopback()
}
