import Cryptography
import Stripe

/// `WebhookSignatureVerifier.verify(header:body:now:)`. The input is a `Stripe-Signature`
/// header (up to the first newline) and a body (the rest).
///
/// Besides the header as it stands, a genuine signature is appended after the fuzzed items
/// (they may not hide it) and checked at a timestamp offset derived from the input (inside and
/// outside the tolerance), and a body changed by one bit must be refused.
enum SignatureFuzz {
    static let secrets = ["whsec_test_fuzz_current", "whsec_test_fuzz_previous"]
    static let tolerance: Int64 = 300
    static let now: Int64 = 1_700_000_000
    static let verifier = WebhookSignatureVerifier(secrets: secrets, tolerance: tolerance)

    static func run(_ bytes: [UInt8]) {
        let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) ?? bytes.endIndex
        let header = String(decoding: bytes[..<newline], as: UTF8.self)
        let body = Array(bytes[min(newline + 1, bytes.endIndex)...])

        if let timestamp = try? verifier.verify(header: header, body: body, now: now) {
            check(abs(now - timestamp) <= tolerance, "accepted timestamp \(timestamp)")
            let expected = secrets.map { "v1=" + expectedSignature(secret: $0, timestamp: timestamp, body: body) }
            let headerBytes = Array(header.utf8)
            check(
                expected.contains { headerBytes.contains(bytes: Array($0.utf8)) },
                "accepted a header without a genuine v1 signature")
        }

        let timestamp = now + Int64(bytes.count % 1201) - 600
        let genuine = WebhookSignatureSigner.header(body: body, secrets: [secrets[1]], timestamp: timestamp)
        // Items are split on Characters: a non-ASCII last scalar could join the comma to itself.
        if header.unicodeScalars.last.map(\.isASCII) ?? true {
            let combined = header.isEmpty ? genuine : header + "," + genuine
            do {
                let accepted = try verifier.verify(header: combined, body: body, now: now)
                check(abs(now - timestamp) <= tolerance, "accepted timestamp \(timestamp) outside the tolerance")
                check(accepted == timestamp, "accepted timestamp \(accepted), signed \(timestamp)")
            } catch {
                check(
                    abs(now - timestamp) > tolerance && error == .outsideTolerance,
                    "a genuine signature at \(timestamp) after \(header.debugDescription) was refused: \(error)")
            }
        }
        if !body.isEmpty {
            var altered = body
            altered[altered.count / 2] ^= 0x01
            check((try? verifier.verify(header: genuine, body: altered, now: now)) == nil, "accepted an altered body")
        }
    }

    /// Lower-case hex of HMAC-SHA256(secret, "{t}.{body}"), computed here rather than by the signer.
    static func expectedSignature(secret: String, timestamp: Int64, body: [UInt8]) -> String {
        let mac = Digest.hmacSHA256(key: Array(secret.utf8), message: Array("\(timestamp).".utf8) + body)
        return mac.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            .joined()
    }
}

extension Array where Element == UInt8 {
    /// Whether `bytes` occurs in this array (byte for byte, not Character by Character).
    fileprivate func contains(bytes needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        return (0...(count - needle.count)).contains { self[$0..<$0 + needle.count].elementsEqual(needle) }
    }
}
