#if canImport(Glibc)
    import Glibc
#endif

/// How a client address becomes the `{ip}` of a rate-limit key. IPv4 addresses count one by one;
/// an IPv6 client usually holds a whole /64 (one LAN, one customer of an ISP) and can pick any of
/// its 2⁶⁴ addresses, so per-address buckets would multiply at will: IPv6 addresses count per
/// /64 prefix. An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is the IPv4 client it names.
/// Audit rows keep the full address (`RateLimiter.clientIP`).
enum ClientAddress {
    /// `1.2.3.4` → `1.2.3.4`; `2001:db8:1:2:aaaa::1` → `2001:db8:1:2::/64`; `::ffff:1.2.3.4` →
    /// `1.2.3.4`; ports and zones are dropped; anything unparsable is returned as given.
    static func rateLimitBucket(_ remoteAddress: String) -> String {
        let address = RateLimiter.clientIP(remoteAddress)
        guard address.contains(":") else { return address }
        let unzoned = String(address.prefix { $0 != "%" })
        var raw = in6_addr()
        guard inet_pton(AF_INET6, unzoned, &raw) == 1 else { return address }
        let bytes = withUnsafeBytes(of: &raw) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            return bytes[12...].map { String($0) }.joined(separator: ".")
        }
        let groups = stride(from: 0, to: 8, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
        return groups.map { String($0, radix: 16) }.joined(separator: ":") + "::/64"
    }
}
