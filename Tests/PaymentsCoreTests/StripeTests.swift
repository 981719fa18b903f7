import Foundation
import Testing

@testable import Stripe

/// Checks the Stripe module against fixtures produced by the official `stripe` Python library
/// (scripts/gen_stripe_fixtures.py → tests/fixtures/stripe/).
@Suite struct StripeTests {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("tests/fixtures/stripe")

    static func load(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: fixtures.appendingPathComponent(name))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Rebuilds a parameter tree from the fixture's ordered `pairs` is not possible for nesting,
    /// so the ordered JSON text of `params` is parsed keeping key order.
    static func parameters(fromOrderedJSON text: String) throws -> [(String, StripeParameter)] {
        guard case .object(let entries) = try OrderedJSON.parse(text) else { throw OrderedJSON.Failure() }
        return entries
    }

    /// Every key, as Foundation's own `convertFromSnakeCase` names it (a keyed container's
    /// `allKeys` are the converted JSON keys).
    private struct FoundationKeys: Decodable {
        struct Key: CodingKey {
            let stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        let names: Set<String>
        init(from decoder: any Decoder) throws {
            names = Set(try decoder.container(keyedBy: Key.self).allKeys.map(\.stringValue))
        }
    }

    @Test func theFastKeyConversionIsFoundationsSnakeCaseRule() throws {
        let keys = [
            "id", "amount_capturable", "payment_method_details", "request_three_d_secure", "api_version",
            "_leading", "trailing_", "__both__", "double__underscore", "_", "___", "UPPER_CASE", "mixed_Case_KEY",
            "digit_3d_secure", "x_a3d_b_2", "x_ab3cd_9", "v1_0a", "a_b_c", "ümlaut_key", "",
        ]
        let json = "{" + keys.enumerated().map { "\"\($1)\":\($0)" }.joined(separator: ",") + "}"
        let foundation = JSONDecoder()
        foundation.keyDecodingStrategy = .convertFromSnakeCase
        let expected = try foundation.decode(FoundationKeys.self, from: Data(json.utf8)).names
        #expect(Set(keys.map(StripeJSON.camelCase)) == expected)
        #expect(try StripeJSON.decoder.decode(FoundationKeys.self, from: Data(json.utf8)).names == expected)
    }

    @Test func theSignatureHeaderIsTrimmedAsFoundationTrimsIt() {
        for text in [
            "t", " t", "t ", "\tv1\t", "\u{00A0}t\u{2003}", "\u{3000}v1", "t\n", "\nt", "", "   ", " \u{00A0} ", "v 1",
        ] {
            #expect(
                String(trimmingWhitespace(Substring(text))) == text.trimmingCharacters(in: .whitespaces),
                "\(text.unicodeScalars.map { String($0.value, radix: 16) })")
        }
    }

    @Test func anEventAndItsPaymentIntentDecodeFromOneParse() throws {
        let intent = Array(
            #"""
            {"id":"evt_1","object":"event","type":"payment_intent.succeeded","created":1700000000,"livemode":false,
             "data":{"object":{"id":"pi_1","object":"payment_intent","amount":5000,"amount_capturable":0,
             "amount_received":5000,"currency":"usd","status":"succeeded","created":1699999000,
             "latest_charge":"ch_1","last_payment_error":null,"metadata":{}}}}
            """#.utf8)
        let (event, decoded) = try Event.decode(intent, objectAs: PaymentIntent.self)
        #expect(event.id == "evt_1" && event.type == "payment_intent.succeeded" && event.data.object.id == "pi_1")
        #expect(decoded?.id == "pi_1" && decoded?.amountReceived == 5000 && decoded?.latestCharge?.id == "ch_1")

        // Another object type: the event still decodes, the object is nil.
        let charge = Array(
            #"""
            {"id":"evt_2","object":"event","type":"charge.refunded","created":1700000000,"livemode":false,
             "data":{"object":{"id":"ch_1","object":"charge","amount":5000}}}
            """#.utf8)
        let (other, none) = try Event.decode(charge, objectAs: PaymentIntent.self)
        #expect(other.id == "evt_2" && none == nil)
    }

    @Test func formEncodingMatchesTheOfficialLibrary() throws {
        let text = try String(contentsOf: Self.fixtures.appendingPathComponent("form_encoding.json"), encoding: .utf8)
        let document = try Self.load("form_encoding.json")
        let cases = try #require(document["cases"] as? [[String: Any]])
        #expect(cases.count >= 10)
        let orderedCases = try OrderedJSON.casesParams(text)
        for (index, testCase) in cases.enumerated() {
            let encoded = try #require(testCase["encoded"] as? String)
            #expect(FormEncoder.encode(orderedCases[index]) == encoded, "\(testCase["name"] ?? index)")
        }
    }

    @Test func theKeyDecidesWhichModeOfEventsIsAccepted() {
        for (key, isLive) in [
            ("sk_live_abc", true), ("rk_live_abc", true), ("sk_test_abc", false), ("rk_test_abc", false),
        ] {
            #expect(StripeConfiguration(secretKey: key).isLiveMode == isLive, "\(key.prefix(8))")
        }
    }

    @Test func webhookVerifierMatchesStripeVectors() throws {
        let document = try Self.load("webhook_signatures.json")
        let vectors = try #require(document["vectors"] as? [[String: Any]])
        #expect(vectors.count >= 20)
        for vector in vectors {
            let name = vector["name"] as? String ?? "?"
            let encoded = try #require(vector["body_base64"] as? String)
            let body = try #require(Data(base64Encoded: encoded))
            let secrets = try #require(vector["secrets"] as? [String])
            let tolerance = try #require(vector["tolerance"] as? Int)
            let now = try #require(vector["now"] as? Int)
            let verifier = WebhookSignatureVerifier(secrets: secrets, tolerance: Int64(tolerance))
            let outcome: String
            do throws(WebhookSignatureFailure) {
                try verifier.verify(header: vector["header"] as? String, body: Array(body), now: Int64(now))
                outcome = "ok"
            } catch {
                outcome = error.rawValue
            }
            #expect(outcome == vector["expected"] as? String, "\(name)")
        }
    }

    @Test func signerProducesHeadersTheVerifierAccepts() throws {
        let body = Array("{\"id\":\"evt_1\"}\r\n".utf8)
        let header = WebhookSignatureSigner.header(
            body: body, secrets: ["whsec_test_a", "whsec_test_b"], timestamp: 100)
        #expect(
            try WebhookSignatureVerifier(secrets: ["whsec_test_b"], tolerance: 5).verify(
                header: header, body: body, now: 104) == 100)
    }

    @Test func errorBodiesDecodeToTypedErrors() throws {
        let document = try Self.load("errors.json")
        let cases = try #require(document["cases"] as? [[String: Any]])
        #expect(cases.count >= 5)
        for testCase in cases {
            let status = try #require(testCase["status"] as? Int)
            let object = try #require(testCase["body"])
            let body = try JSONSerialization.data(withJSONObject: object)
            let error = StripeError.from(status: status, body: Array(body), requestID: "req_x", attempts: 1)
            let detail = (testCase["body"] as? [String: Any])?["error"] as? [String: Any]
            #expect(error.code == detail?["code"] as? String)
            #expect(error.declineCode == detail?["decline_code"] as? String)
            #expect(error.param == detail?["param"] as? String)
            #expect(error.type == detail?["type"] as? String)
            let expectedKind: [String: StripeError.Kind] = [
                "CardError": .card, "InvalidRequestError": .invalidRequest, "IdempotencyError": .idempotency,
                "RateLimitError": .rateLimited, "AuthenticationError": .authentication, "PermissionError": .permission,
                "APIError": .api,
            ]
            let exception = try #require(testCase["stripe_python_exception"] as? String)
            #expect(error.kind == expectedKind[exception], "\(testCase["name"] ?? "?")")
        }
    }

    @Test func errorDescriptionsCarryNoSecrets() {
        let error = StripeError.from(
            status: 401,
            body: Array(
                #"{"error":{"type":"invalid_request_error","message":"Invalid API Key provided: sk_test_****1234"}}"#
                    .utf8),
            requestID: "req_1", attempts: 1)
        #expect(!error.description.contains("sk_"))
        #expect(error.kind == .authentication)
    }

    @Test func retryRuleFollowsStripe() {
        #expect(StripeClient.shouldRetry(status: 500, shouldRetryHeader: nil))
        #expect(StripeClient.shouldRetry(status: 503, shouldRetryHeader: nil))
        #expect(StripeClient.shouldRetry(status: 429, shouldRetryHeader: nil))
        #expect(StripeClient.shouldRetry(status: 409, shouldRetryHeader: nil))
        #expect(!StripeClient.shouldRetry(status: 400, shouldRetryHeader: nil))
        #expect(!StripeClient.shouldRetry(status: 402, shouldRetryHeader: nil))
        #expect(!StripeClient.shouldRetry(status: 500, shouldRetryHeader: "false"))
        #expect(StripeClient.shouldRetry(status: 400, shouldRetryHeader: "true"))
    }

    @Test func expandableFieldsAcceptIdsAndObjects() throws {
        let asID = try StripeJSON.decoder.decode(
            PaymentIntent.self,
            from: Array(
                #"{"id":"pi_1","amount":500,"currency":"usd","status":"requires_capture","created":1,"latest_charge":"ch_1","unknown_field":{"x":1}}"#
                    .utf8))
        #expect(asID.latestCharge?.id == "ch_1")
        #expect(asID.latestCharge?.object == nil)
        let asObject = try StripeJSON.decoder.decode(
            PaymentIntent.self,
            from: Array(
                #"{"id":"pi_1","amount":500,"currency":"usd","status":"succeeded","created":1,"latest_charge":{"id":"ch_2","amount":500,"amount_captured":500,"amount_refunded":0,"transfer":"tr_1"}}"#
                    .utf8))
        #expect(asObject.latestCharge?.id == "ch_2")
        #expect(asObject.latestCharge?.object?.amountCaptured == 500)
        #expect(asObject.latestCharge?.object?.transfer?.id == "tr_1")
        // Fields Stripe always sends are required: an object without them is refused, not defaulted.
        #expect(throws: DecodingError.self) {
            try StripeJSON.decoder.decode(
                Charge.self, from: Array(#"{"id":"ch_3","amount":500,"amount_refunded":0}"#.utf8))
        }
    }

    @Test func pathComponentsCannotEscape() {
        #expect(StripeClient.pathComponent("pi_123") == "pi_123")
        #expect(StripeClient.pathComponent("../v1/accounts?x=1") == "%2E%2E%2Fv1%2Faccounts%3Fx%3D1")
    }

    /// `payments doctor` reads Stripe's clock from the HTTP `Date` header (IMF-fixdate).
    @Test func httpDatesParse() {
        #expect(StripeClient.httpDate("Sun, 06 Dec 2026 19:22:56 GMT")?.timeIntervalSince1970 == 1_796_584_976)
        #expect(StripeClient.httpDate("yesterday") == nil)
    }
}

/// A JSON reader that keeps object key order (the fixtures' `params` order is the encoding order).
enum OrderedJSON {
    struct Failure: Error {}

    static func casesParams(_ text: String) throws -> [[(String, StripeParameter)]] {
        guard case .object(let root) = try parse(text),
            case .array(let cases)? = root.first(where: { $0.0 == "cases" })?.1
        else { throw Failure() }
        return try cases.map { testCase in
            guard case .object(let fields) = testCase,
                case .object(let params)? = fields.first(where: { $0.0 == "params" })?.1
            else { throw Failure() }
            return params
        }
    }

    static func parse(_ text: String) throws -> StripeParameter {
        var scanner = Array(text.unicodeScalars)[...]
        return try value(&scanner)
    }

    private static func skipSpace(_ s: inout ArraySlice<Unicode.Scalar>) {
        while let c = s.first, c == " " || c == "\n" || c == "\r" || c == "\t" { s.removeFirst() }
    }

    private static func value(_ s: inout ArraySlice<Unicode.Scalar>) throws -> StripeParameter {
        skipSpace(&s)
        guard let c = s.first else { throw Failure() }
        switch c {
        case "{":
            s.removeFirst()
            var entries: [(String, StripeParameter)] = []
            skipSpace(&s)
            if s.first == "}" {
                s.removeFirst()
                return .object(entries)
            }
            while true {
                skipSpace(&s)
                guard case .string(let key) = try value(&s) else { throw Failure() }
                skipSpace(&s)
                guard s.popFirst() == ":" else { throw Failure() }
                entries.append((key, try value(&s)))
                skipSpace(&s)
                let next = s.popFirst()
                if next == "}" { return .object(entries) }
                guard next == "," else { throw Failure() }
            }
        case "[":
            s.removeFirst()
            var elements: [StripeParameter] = []
            skipSpace(&s)
            if s.first == "]" {
                s.removeFirst()
                return .array(elements)
            }
            while true {
                elements.append(try value(&s))
                skipSpace(&s)
                let next = s.popFirst()
                if next == "]" { return .array(elements) }
                guard next == "," else { throw Failure() }
            }
        case "\"":
            var literal = "\""
            s.removeFirst()
            while let c = s.popFirst() {
                literal.unicodeScalars.append(c)
                if c == "\\", let escaped = s.popFirst() {
                    literal.unicodeScalars.append(escaped)
                    continue
                }
                if c == "\"" { break }
            }
            let decoded = try JSONSerialization.jsonObject(with: Data(literal.utf8), options: .fragmentsAllowed)
            guard let string = decoded as? String else { throw Failure() }
            return .string(string)
        default:
            var token = ""
            while let c = s.first, !",}] \n\r\t".unicodeScalars.contains(c) {
                token.unicodeScalars.append(c)
                s.removeFirst()
            }
            switch token {
            case "true": return .boolean(true)
            case "false": return .boolean(false)
            case "null": return .omitted
            default:
                guard let number = Int64(token) else { throw Failure() }
                return .integer(number)
            }
        }
    }
}
