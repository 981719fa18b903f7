import Cryptography
import Foundation

@testable import PaymentsCore

/// The small parsers of query strings and cookies, and the opaque tokens that arrive in them:
/// `Request.parseQuery`, `AuthResolver.cookies`, `PageCursor(encoded:)` and
/// `OnboardingState.decode`. Every input goes to all four.
enum QueryFuzz {
    static let stateKey = OnboardingState.key(stripeSecretKey: "sk_test_fuzz_only")
    static let now: Int64 = 1_700_000_000
    /// ASCII letters and digits: everything else is percent-encoded when a query is rebuilt.
    static let unreserved = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

    static func run(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)

        // A query rebuilt from what was parsed, fully percent-encoded, parses to the same values.
        let query = Request.parseQuery(text)
        let rebuilt = query.map { name, value in encode(name) + "=" + encode(value) }.joined(separator: "&")
        check(
            Request.parseQuery(rebuilt) == query,
            "a rebuilt query parses differently: \(rebuilt.prefix(200).debugDescription)")

        // Cookie names and values come out trimmed.
        for (name, value) in AuthResolver.cookies(text) {
            check(
                name == name.trimmingCharacters(in: .whitespaces)
                    && value == value.trimmingCharacters(in: .whitespaces),
                "an untrimmed cookie \(name.debugDescription)")
        }

        for candidate in [text, query["cursor"]].compactMap({ $0 }) {
            guard let cursor = try? PageCursor(encoded: candidate) else { continue }
            check(
                cursor.createdAt >= 0 && UUID(uuidString: cursor.id) != nil,
                "accepted cursor \(candidate.debugDescription)")
            let again = try? PageCursor(encoded: cursor.encoded)
            check(again?.createdAt == cursor.createdAt && again?.id == cursor.id, "a cursor does not round-trip")
        }

        // As it stands, a state can only be refused (the fuzzer cannot forge its HMAC) ...
        for candidate in [text, query["state"]] {
            if let state = try? OnboardingState.decode(candidate, key: stateKey, now: now) {
                checkAccepted(state, roundTrips: false)
            }
        }
        // ... so the input is also signed as a state's payload, which reaches the field parsing.
        let payload = Array(bytes.prefix(400))
        let signed =
            Base64URL.encode(payload) + "." + Base64URL.encode(Digest.hmacSHA256(key: stateKey, message: payload))
        do {
            // A payload of invalid UTF-8 (never one we signed) is read with replacement characters.
            let isUTF8 = String(validating: payload, as: UTF8.self) != nil
            checkAccepted(try OnboardingState.decode(signed, key: stateKey, now: now), roundTrips: isUTF8)
        } catch {
            check(error != .forged && error != .missing, "a genuinely signed state was refused as \(error)")
        }
    }

    static func checkAccepted(_ state: OnboardingState, roundTrips: Bool) {
        check(state.expiresAt >= now, "accepted a state that expired at \(state.expiresAt)")
        guard roundTrips else { return }
        let again = try? OnboardingState.decode(state.encoded(key: stateKey), key: stateKey, now: now)
        check(again == state, "a state does not round-trip: \(state)")
    }

    static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }
}
