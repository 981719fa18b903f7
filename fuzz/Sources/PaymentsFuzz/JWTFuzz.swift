import Cryptography

@testable import PaymentsCore

/// `TokenVerifier.verify` with an HS256 secret and no JWKS, and `Base64URL`.
///
/// Each input is tried three ways: as a token as it stands (almost always refused: the fuzzer
/// cannot forge an HMAC), as a header and claims (split at the first newline) that we sign with
/// the secret, so that claim validation is reached too, and as base64url text and bytes.
enum JWTFuzz {
    static let secret = Array("fuzz-only-hs256-secret-0123456789abcdef".utf8)
    static let now: Int64 = 1_700_000_000
    static let verifier = TokenVerifier(
        sharedSecret: secret, keys: [:], issuer: "https://idp.example.test",
        audience: "payments", leeway: 60, maximumLifetime: 86_400)
    /// No secret and no keys: nothing may ever verify.
    static let keyless = TokenVerifier(
        sharedSecret: nil, keys: [:], issuer: nil, audience: nil,
        leeway: 60, maximumLifetime: 86_400)

    static func run(_ bytes: [UInt8]) {
        let token = String(decoding: bytes, as: UTF8.self)
        if let claims = try? verifier.verify(token, now: now) {
            checkAccepted(token, claims)
        }
        check((try? keyless.verify(token, now: now)) == nil, "a verifier without keys accepted a token")

        let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) ?? bytes.endIndex
        let header = Array(bytes[..<newline])
        let payload = Array(bytes[min(newline + 1, bytes.endIndex)...])
        let signed = sign(header: header, payload: payload)
        if let claims = try? verifier.verify(signed, now: now) {
            checkAccepted(signed, claims)
            let forged = sign(header: header, payload: payload, flippingSignature: true)
            do {
                _ = try verifier.verify(forged, now: now)
                check(false, "accepted a token whose signature was altered")
            } catch {
                check(error == .badSignature, "an altered signature was refused as \(error), not badSignature")
            }
        }
        check((try? keyless.verify(signed, now: now)) == nil, "a verifier without keys accepted a signed token")

        checkBase64URL(token: token, bytes: bytes)
    }

    static func sign(header: [UInt8], payload: [UInt8], flippingSignature: Bool = false) -> String {
        let input = Base64URL.encode(header) + "." + Base64URL.encode(payload)
        var signature = Digest.hmacSHA256(key: secret, message: Array(input.utf8))
        if flippingSignature { signature[0] ^= 0x01 }
        return input + "." + Base64URL.encode(signature)
    }

    /// What an accepted token must be, checked independently of the verifier's own code path.
    static func checkAccepted(_ token: String, _ claims: TokenClaims) {
        check(token.utf8.count <= TokenVerifier.maximumTokenBytes, "accepted a token of \(token.utf8.count) bytes")
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        check(parts.count == 3, "accepted a token of \(parts.count) parts")
        guard parts.count == 3, let headerBytes = Base64URL.decode(parts[0]),
            let payloadBytes = Base64URL.decode(parts[1]),
            case .object(let header)? = try? JSONParser.parse(headerBytes),
            case .object(let payload)? = try? JSONParser.parse(payloadBytes)
        else {
            check(false, "accepted a token whose header or claims are not JSON objects")
            return
        }
        check(header["alg"] == .string("HS256"), "accepted alg \(String(describing: header["alg"]))")
        check(header["crit"] == nil, "accepted a token with crit")
        check(payload["iss"] == .string("https://idp.example.test"), "accepted a foreign issuer")
        check(payload["sub"] == .string(claims.subject), "the subject is not the token's sub")
        check(
            !claims.subject.isEmpty && claims.subject.utf8.count <= 255,
            "accepted a subject of \(claims.subject.utf8.count) bytes")
        check(
            !claims.subject.unicodeScalars.contains(where: \.properties.generalCategory.isControl),
            "accepted a subject with control characters")
        check(claims.expiresAt >= now - 60, "accepted an expired token (exp \(claims.expiresAt))")
        check(
            claims.expiresAt <= now + 86_400 + 60, "accepted a token living past the maximum (exp \(claims.expiresAt))")
    }

    /// `Base64URL`: encoding round-trips any bytes; what decodes is the alphabet only, of a
    /// length that is not 1 mod 4, and re-encodes to text that decodes the same.
    static func checkBase64URL(token: String, bytes: [UInt8]) {
        let encoded = Base64URL.encode(bytes)
        check(Base64URL.decode(Substring(encoded)) == bytes, "Base64URL does not round-trip \(bytes.count) bytes")
        check(
            !encoded.utf8.contains(where: {
                $0 == UInt8(ascii: "=") || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "/")
            }),
            "Base64URL.encode wrote padding or the standard alphabet")
        guard let decoded = Base64URL.decode(Substring(token)) else { return }
        let isAlphabet = token.utf8.allSatisfy {
            $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_")
        }
        check(isAlphabet, "Base64URL decoded text outside its alphabet")
        check(token.utf8.count % 4 != 1, "Base64URL decoded \(token.utf8.count) characters")
        check(
            decoded.count == token.utf8.count * 3 / 4,
            "Base64URL decoded \(token.utf8.count) characters to \(decoded.count) bytes")
        check(
            Base64URL.decode(Substring(Base64URL.encode(decoded))) == decoded, "Base64URL re-encoding changed the bytes"
        )
    }
}

extension Unicode.GeneralCategory {
    fileprivate var isControl: Bool { self == .control }
}
