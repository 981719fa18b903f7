import Cryptography
import Foundation

/// Why a `Stripe-Signature` header was not accepted (never carries the expected signature).
public enum WebhookSignatureFailure: String, Error, Sendable, CaseIterable {
    /// No header, or an empty one.
    case missing
    /// No `t=` timestamp, a non-numeric or implausible one, or no `v1=` signature.
    case malformed
    /// No `v1` signature matches any configured secret.
    case noMatch = "no_match"
    /// The timestamp is further than the tolerance from now, in either direction.
    case outsideTolerance = "outside_tolerance"
}

/// Verifies Stripe's webhook signatures: `t=…` and every `v1=…` (other schemes ignored),
/// HMAC-SHA256 of `"{t}.{raw body}"` with each configured secret, compared in constant time.
/// The order of checks follows Stripe's libraries: signature first, then the timestamp.
public struct WebhookSignatureVerifier: Sendable {
    /// Endpoint secrets (`whsec_…`); any may match, which allows rotation.
    public let secrets: [String]
    /// Seconds the timestamp may differ from now, both ways.
    public let tolerance: Int64

    /// Creates a verifier.
    public init(secrets: [String], tolerance: Int64) {
        self.secrets = secrets
        self.tolerance = tolerance
    }

    /// Returns the signed timestamp, or throws why the header fails.
    @discardableResult
    public func verify(header: String?, body: [UInt8], now: Int64) throws(WebhookSignatureFailure) -> Int64 {
        guard let header, !header.isEmpty else { throw .missing }
        var timestamp: Int64?
        var signatures: [[UInt8]] = []
        for item in header.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            switch trimmingWhitespace(parts[0]) {
            case "t": timestamp = Int64(parts[1])
            case "v1": signatures.append(Array(parts[1].utf8))
            default: continue  // v0 and unknown schemes are ignored
            }
        }
        // A timestamp is seconds since 1970, before the year 3000: anything else is malformed
        // (and would overflow `now - timestamp` below).
        guard let timestamp, (0...32_503_680_000).contains(timestamp), !signatures.isEmpty else { throw .malformed }

        let signedPayload = Array("\(timestamp).".utf8) + body
        var matched = false
        for secret in secrets {
            let expected = Array(Hex.encode(Digest.hmacSHA256(key: Array(secret.utf8), message: signedPayload)).utf8)
            for signature in signatures where Digest.constantTimeEqual(expected, signature) {
                matched = true
            }
        }
        guard matched else { throw .noMatch }
        guard abs(now - timestamp) <= tolerance else { throw .outsideTolerance }
        return timestamp
    }
}

/// `trimmingCharacters(in: .whitespaces)` (tabs and Unicode space separators) without a
/// round trip through `NSString`, which cost more than the HMAC on the webhook's hot path.
func trimmingWhitespace(_ text: Substring) -> Substring {
    let isSpace: (Unicode.Scalar) -> Bool = { $0 == "\t" || $0.properties.generalCategory == .spaceSeparator }
    let scalars = text.unicodeScalars
    guard let first = scalars.firstIndex(where: { !isSpace($0) }), let last = scalars.lastIndex(where: { !isSpace($0) })
    else { return "" }
    return Substring(scalars[first...last])
}

/// Builds `Stripe-Signature` headers (the fake Stripe and the tests use the same scheme).
public enum WebhookSignatureSigner {
    /// `t={timestamp},v1={hex}` for each secret.
    public static func header(body: [UInt8], secrets: [String], timestamp: Int64) -> String {
        let payload = Array("\(timestamp).".utf8) + body
        let signatures = secrets.map { "v1=" + Hex.encode(Digest.hmacSHA256(key: Array($0.utf8), message: payload)) }
        return (["t=\(timestamp)"] + signatures).joined(separator: ",")
    }
}
