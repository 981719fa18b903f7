import Cryptography
import Foundation
import Stripe
import Testing

@testable import JSON
@testable import PaymentsCore

/// The parsers and arithmetic that untrusted bytes reach before anything is verified.
@Suite struct UntrustedInputTests {
    @Test func parsesEveryKindOfValueExactly() throws {
        let value = try JSONParser.parse(
            Array(#" {"a":[1,-2,3.5,1e3,true,false,null],"b":"x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00","c":{}} "#.utf8))
        #expect(
            value == [
                "a": [1, -2, .double(3.5), .double(1000), true, false, nil],
                "b": .string("x\"\\/\u{8}\u{C}\n\r\t\u{E9}\u{1F600}"), "c": .object([:]),
            ])
        #expect(try JSONParser.parse(Array("9223372036854775807".utf8)) == .int(.max))
        #expect(try JSONParser.parse(Array("9223372036854775808".utf8)) == .double(9_223_372_036_854_775_808))
        #expect(try JSONParser.parse(Array("\"na\u{EF}ve\"".utf8)) == .string("na\u{EF}ve"))
        // Either side of the in-place sum of up to 18 digits, and of the plain ASCII string.
        for text in [
            "999999999999999999", "-99999999999999999", "-999999999999999999", "1000000000000000000", "0", "-0",
        ] {
            #expect(try JSONParser.parse(Array(text.utf8)) == .int(Int64(text)!), "\(text)")
        }
        #expect(try JSONParser.parse(Array("-9223372036854775808".utf8)) == .int(.min))
        #expect(
            try JSONParser.parse(Array(#"["a\u007f ~", "plain", "", "tail\\", "\"head"]"#.utf8)) == [
                "a\u{7F} ~", "plain", "", "tail\\", "\"head",
            ])
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "1e", "+1", "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12\"",
        "\"\\ud800\"", "\"\\udc00\"", "{\"a\":1,\"a\":2}", "[1] [2]", "{a:1}", "'a'", "\"\u{01}\"", "1e999", "NaN",
    ])
    func refusesMalformedDocuments(_ text: String) {
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(Array(text.utf8)) }
    }

    @Test func refusesInvalidUTF8() {
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse([0x22, 0xC3, 0x28, 0x22]) }
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse([0x22, 0xED, 0xA0, 0x80, 0x22]) }
    }

    @Test func limitsNesting() throws {
        let fine = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
        #expect(throws: Never.self) { try JSONParser.parse(Array(fine.utf8)) }
        let deep = String(repeating: "[", count: 33) + String(repeating: "]", count: 33)
        #expect(throws: JSONParser.Failure(reason: "nested deeper than 32 levels", offset: 32)) {
            try JSONParser.parse(Array(deep.utf8))
        }
        // An unbounded opening run fails at the limit, having read only 33 bytes of it.
        #expect(throws: JSONParser.Failure.self) {
            try JSONParser.parse(Array(repeating: UInt8(ascii: "["), count: 1 << 20))
        }
    }

    @Test func limitsKeysAndTreatsCanonicallyEquivalentKeysAsOne() throws {
        let fine = "{\"" + String(repeating: "k", count: 256) + "\":1}"
        #expect(throws: Never.self) { try JSONParser.parse(Array(fine.utf8)) }
        let long = "{\"" + String(repeating: "k", count: 257) + "\":1}"
        #expect(throws: JSONParser.Failure(reason: "object key longer than 256 bytes", offset: 1)) {
            try JSONParser.parse(Array(long.utf8))
        }
        #expect(throws: JSONParser.Failure.self) {
            try JSONParser.parse(Array(#"{"caf\u00e9":1,"cafe\u0301":2}"#.utf8))
        }
        // A long key of combining marks (whose normalisation is quadratic) is refused before it is hashed.
        let marks = "{\"a" + String(repeating: "\u{301}\u{316}", count: 7000) + "\":1}"
        let started = ContinuousClock.now
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(Array(marks.utf8)) }
        #expect(ContinuousClock.now - started < .milliseconds(100))
    }

    /// The work is linear: a 64 KB document nested to the limit everywhere parses in
    /// milliseconds (the `Codable` decoding it replaces took over a minute on such input).
    @Test func largeNestedDocumentsParseQuickly() throws {
        let unit = String(repeating: "[", count: 31) + "1" + String(repeating: "]", count: 31)
        let document = "[" + Array(repeating: unit, count: 1000).joined(separator: ",") + "]"
        #expect(document.utf8.count > 60_000)
        let started = ContinuousClock.now
        guard case .array(let items) = try JSONParser.parse(Array(document.utf8)) else {
            Issue.record("not an array")
            return
        }
        #expect(items.count == 1000)
        #expect(ContinuousClock.now - started < .seconds(1))
    }

    @Test func feesNeverOverflow() throws {
        let marketplace = try MarketplaceConfiguration(environment: Environment(["PLATFORM_FEE_BPS": "1000"]))
        #expect(marketplace.fee(for: 1_050) == 105)
        #expect(marketplace.fee(for: 1_005) == 101)
        #expect(marketplace.fee(for: 1_004) == 100)
        #expect(marketplace.fee(for: .max) == 922_337_203_685_477_581)
        #expect(marketplace.fee(for: -5) == 0)
        let everything = try MarketplaceConfiguration(environment: Environment(["PLATFORM_FEE_BPS": "10000"]))
        #expect(everything.fee(for: .max) == .max)
    }

    /// Issue 16: `CHARGE_MODEL` is destination (default) or direct; anything else, or
    /// `DESTINATION_ON_BEHALF_OF` under direct, stops start-up with one line naming the variable.
    @Test func theChargeModelIsReadAndValidated() throws {
        #expect(try MarketplaceConfiguration(environment: Environment([:])).chargeModel == .destination)
        let direct = try MarketplaceConfiguration(environment: Environment(["CHARGE_MODEL": "direct"]))
        #expect(direct.chargeModel == .direct && !direct.destinationOnBehalfOf)
        let onBehalf = try MarketplaceConfiguration(environment: Environment(["DESTINATION_ON_BEHALF_OF": "true"]))
        #expect(onBehalf.chargeModel == .destination && onBehalf.destinationOnBehalfOf)
        for environment in [["CHARGE_MODEL": "Direct"], ["CHARGE_MODEL": "separate"]] {
            #expect {
                try MarketplaceConfiguration(environment: Environment(environment))
            } throws: { error in
                "\(error)" == "environment variable CHARGE_MODEL must be destination or direct"
            }
        }
        #expect {
            try MarketplaceConfiguration(
                environment: Environment(["CHARGE_MODEL": "direct", "DESTINATION_ON_BEHALF_OF": "1"]))
        } throws: { error in
            "\(error)".hasPrefix("environment variable DESTINATION_ON_BEHALF_OF applies to CHARGE_MODEL=destination")
        }
    }

    @Test func webhookTimestampsAtTheEdgesAreMalformedNotFatal() {
        let body = Array("{}".utf8)
        let verifier = WebhookSignatureVerifier(secrets: ["whsec_test_a"], tolerance: 300)
        for timestamp in [Int64.min, -1, Int64.max, 32_503_680_001] {
            let header = WebhookSignatureSigner.header(body: body, secrets: ["whsec_test_a"], timestamp: timestamp)
            #expect(throws: WebhookSignatureFailure.malformed) {
                try verifier.verify(header: header, body: body, now: 1_800_000_000)
            }
        }
    }

    @Test func failureSummariesAreSmallAndClean() throws {
        var fields: [String: JSONValue] = [
            "reason": .string("bad\u{0}\u{7}" + String(repeating: "x", count: 500)), "nested": ["a": ["b": 1]],
            "list": [1, 2, 3], "amount": 5,
        ]
        for index in 0..<40 { fields["z\(index)"] = .string("v") }
        let summary = try #require(FailureAudit.summary(.object(fields)))
        guard case .object(let kept) = summary else {
            Issue.record("not an object")
            return
        }
        #expect(kept.count == FailureAudit.maximumFields + 1)
        #expect(kept["amount"] == 5)
        #expect(kept["list"] == "<array of 3>")
        #expect(kept["nested"] == "<object>")
        #expect(kept["<omitted fields>"] == .int(Int64(fields.count - FailureAudit.maximumFields)))
        let reason = try #require(kept["reason"])
        #expect(reason == .string("bad" + String(repeating: "x", count: 61)))
        #expect(JSONCoding.encode(summary).count < 2048)
        #expect(FailureAudit.summary("text") == nil)
        #expect(FailureAudit.identifier("0f1e2d3c-aaaa-bbbb-cccc-000000000000") != nil)
        #expect(FailureAudit.identifier("a\u{0}b") == nil)
        #expect(FailureAudit.identifier(String(repeating: "a", count: 65)) == nil)
    }

    @Test func stripeKeysAreStableAndDistinguishTheirParameters() {
        let id = "0F1E2D3C-AAAA-BBBB-CCCC-000000000000"
        #expect(StripeKeys.create(id) == "payment:0f1e2d3c-aaaa-bbbb-cccc-000000000000:create")
        #expect(
            StripeKeys.cancel(id, reason: .abandoned) == "payment:0f1e2d3c-aaaa-bbbb-cccc-000000000000:cancel:abandoned"
        )
        #expect(StripeKeys.cancel(id, reason: .requestedByCustomer) != StripeKeys.cancel(id, reason: .abandoned))
        #expect(StripeKeys.capture(id, amount: 5000) == "payment:0f1e2d3c-aaaa-bbbb-cccc-000000000000:capture:5000")
        #expect(StripeKeys.capture(id, amount: 100) != StripeKeys.capture(id, amount: 5000))
        #expect(StripeKeys.fundMilestone(id, attempt: 1) == "milestone:0f1e2d3c-aaaa-bbbb-cccc-000000000000:fund")
        #expect(StripeKeys.fundMilestone(id, attempt: 2) == "milestone:0f1e2d3c-aaaa-bbbb-cccc-000000000000:fund:2")
        #expect(StripeKeys.releaseMilestone(id) == "milestone:0f1e2d3c-aaaa-bbbb-cccc-000000000000:release")
        #expect(StripeKeys.disputeRefund(id, number: 3) == "dispute:0f1e2d3c-aaaa-bbbb-cccc-000000000000:refund:3")
        #expect(StripeKeys.disputeReversal(id, number: 3) == "dispute:0f1e2d3c-aaaa-bbbb-cccc-000000000000:reversal:3")
        #expect(StripeKeys.paymentRefund(id, number: 2) == "payment:0f1e2d3c-aaaa-bbbb-cccc-000000000000:refund:2")
        #expect(StripeKeys.paymentReversal(id, number: 2) == "payment:0f1e2d3c-aaaa-bbbb-cccc-000000000000:reversal:2")
        #expect(
            RefundScope.goodwill.refundKey(paymentID: id, number: 1)
                != RefundScope.dispute(id).refundKey(
                    paymentID: id, number: 1))
        #expect(
            StripeKeys.disputeEvidence(id, digest: "abc") == "dispute:0f1e2d3c-aaaa-bbbb-cccc-000000000000:evidence:abc"
        )
        #expect(StripeKeys.connectAccount(id) == "profile:0f1e2d3c-aaaa-bbbb-cccc-000000000000:account")
        #expect(
            StripeKeys.payoutDelay("acct_1AbC", days: 7, event: "evt_1XyZ")
                == "account:acct_1abc:payout_delay:7:evt_1xyz")
        #expect(
            StripeKeys.payoutDelay("acct_1AbC", days: 7, event: "evt_1")
                != StripeKeys.payoutDelay("acct_1AbC", days: 7, event: "evt_2"))
        #expect(
            StripeKeys.accountLink(id, state: String(repeating: "x", count: 40) + "0123456789abcdef")
                == "profile:0f1e2d3c-aaaa-bbbb-cccc-000000000000:link:0123456789abcdef")
        #expect(StripeKeys.loginLink(id, nonce: "n1") == "profile:0f1e2d3c-aaaa-bbbb-cccc-000000000000:login:n1")
    }
}

/// Tokens whose header or claims an attacker chose.
@Suite struct HostileTokenTests {
    static let secret = Array("hostile-secret-hostile-secret-0123".utf8)
    static let now: Int64 = 1_800_000_000
    let verifier = TokenVerifier(
        sharedSecret: secret, keys: [:], issuer: nil, audience: nil, leeway: 60,
        maximumLifetime: 86_400)

    static func token(header: String = #"{"alg":"HS256","typ":"JWT"}"#, claims: String) -> String {
        let signingInput = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(claims.utf8))
        return signingInput + "." + Base64URL.encode(Digest.hmacSHA256(key: secret, message: Array(signingInput.utf8)))
    }

    static func claims(sub: String = "u", iat: Int64? = now, exp: String = "\(now + 600)") -> String {
        (iat.map { #"{"iat":\#($0),"# } ?? "{") + #""sub":"\#(sub)","exp":\#(exp)}"#
    }

    @Test func acceptsAnOrdinaryToken() throws {
        #expect(try verifier.verify(Self.token(claims: Self.claims()), now: Self.now).subject == "u")
        #expect(
            try verifier.verify(
                Self.token(header: #"{"alg":"HS256","typ":"at+jwt"}"#, claims: Self.claims()),
                now: Self.now
            ).subject == "u")
    }

    @Test func refusesTypesAndCriticalExtensions() {
        #expect(throws: TokenRejection.unsupportedType) {
            try verifier.verify(
                Self.token(header: #"{"alg":"HS256","typ":"dpop+jwt"}"#, claims: Self.claims()), now: Self.now)
        }
        #expect(throws: TokenRejection.criticalExtension) {
            try verifier.verify(
                Self.token(header: #"{"alg":"HS256","crit":["exp"]}"#, claims: Self.claims()), now: Self.now)
        }
    }

    @Test func refusesLongLifetimesAndImplausibleTimes() {
        #expect(throws: TokenRejection.lifetimeTooLong) {
            try verifier.verify(Self.token(claims: Self.claims(exp: "\(Self.now + 86_401)")), now: Self.now)
        }
        #expect(throws: TokenRejection.lifetimeTooLong) {
            try verifier.verify(Self.token(claims: Self.claims(iat: nil, exp: "\(Self.now + 90_000)")), now: Self.now)
        }
        let decade = Self.now + 10 * 365 * 86_400
        #expect(throws: TokenRejection.notYetValid) {  // an `iat` in the future cannot shorten the lifetime
            try verifier.verify(Self.token(claims: Self.claims(iat: decade - 3600, exp: "\(decade)")), now: Self.now)
        }
        for exp in ["9223372036854775807", "-9223372036854775808", "1e300", "\"soon\""] {
            #expect(throws: TokenRejection.malformed) {
                try verifier.verify(Self.token(claims: Self.claims(exp: exp)), now: Self.now)
            }
        }
    }

    @Test func refusesControlCharactersInTheSubject() {
        #expect(throws: TokenRejection.missingSubject) {
            try verifier.verify(Self.token(claims: Self.claims(sub: #"demo-admin\u0000x"#)), now: Self.now)
        }
    }

    /// A header of nested JSON is refused before any of it is interpreted, and a payload is
    /// parsed only after its signature checks out.
    @Test func nestedHeadersAndUnsignedPayloadsAreCheap() {
        let nested = String(repeating: "[", count: 3000) + String(repeating: "]", count: 3000)
        let forged = Base64URL.encode(Array(nested.utf8)) + "." + Base64URL.encode(Array(nested.utf8)) + ".c2ln"
        let started = ContinuousClock.now
        #expect(throws: TokenRejection.malformed) { try verifier.verify(forged, now: Self.now) }
        let unsigned =
            Self.token(claims: Self.claims()).split(separator: ".")[0] + "." + Base64URL.encode(Array(nested.utf8))
            + ".c2ln"
        #expect(throws: TokenRejection.badSignature) { try verifier.verify(String(unsigned), now: Self.now) }
        #expect(ContinuousClock.now - started < .milliseconds(50))
    }
}
