import Testing

@testable import PaymentsCore

@Suite struct ClientAddressTests {
    @Test func ipv4AddressesCountOneByOne() {
        #expect(ClientAddress.rateLimitBucket("203.0.113.7") == "203.0.113.7")
        #expect(ClientAddress.rateLimitBucket("203.0.113.7:5555") == "203.0.113.7")
        #expect(ClientAddress.rateLimitBucket("203.0.113.8") != ClientAddress.rateLimitBucket("203.0.113.7"))
    }

    @Test func ipv6AddressesShareTheirSlash64() {
        let first = ClientAddress.rateLimitBucket("2001:db8:1:2:aaaa::1")
        #expect(first == "2001:db8:1:2::/64")
        #expect(ClientAddress.rateLimitBucket("2001:db8:1:2:bbbb::2") == first)
        #expect(ClientAddress.rateLimitBucket("2001:0DB8:0001:0002:ffff:ffff:ffff:ffff") == first)
        #expect(ClientAddress.rateLimitBucket("[2001:db8:1:2::99]:443") == first)
        #expect(ClientAddress.rateLimitBucket("2001:db8:1:3::1") == "2001:db8:1:3::/64")
        #expect(ClientAddress.rateLimitBucket("::1") == "0:0:0:0::/64")
        #expect(ClientAddress.rateLimitBucket("fe80::1%eth0") == "fe80:0:0:0::/64")
    }

    @Test func ipv4MappedAddressesAreTheirIPv4Client() {
        #expect(ClientAddress.rateLimitBucket("::ffff:1.2.3.4") == "1.2.3.4")
        #expect(ClientAddress.rateLimitBucket("::FFFF:0102:0304") == "1.2.3.4")
        #expect(ClientAddress.rateLimitBucket("[::ffff:1.2.3.4]:80") == "1.2.3.4")
    }

    @Test func unparsableAddressesAreKeptAsGiven() {
        #expect(ClientAddress.rateLimitBucket("") == "")
        #expect(ClientAddress.rateLimitBucket("unix:") == RateLimiter.clientIP("unix:"))
        #expect(ClientAddress.rateLimitBucket("2001:db8::zz") == "2001:db8::zz")
    }

    @Test func ipKeyedPoliciesUseTheBucketAndAuditKeepsTheAddress() {
        #expect(
            RateLimitPolicy.capture.key(profileID: nil, remoteAddress: "2001:db8:1:2:aaaa::1")
                == "capture:2001:db8:1:2::/64")
        #expect(
            RateLimitPolicy.adminRefund.key(profileID: nil, remoteAddress: "::ffff:1.2.3.4")
                == "admin:refund:1.2.3.4")
        #expect(RateLimitPolicy.intent.key(profileID: "p", remoteAddress: "2001:db8::1") == "intent:p")
        #expect(RateLimiter.clientIP("2001:db8:1:2:aaaa::1") == "2001:db8:1:2:aaaa::1")
    }
}
