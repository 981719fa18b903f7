import Cryptography
import Foundation

/// Base64url without padding (RFC 7515 §2).
enum Base64URL {
    static func decode(_ text: Substring) -> [UInt8]? {
        guard text.utf8.allSatisfy({ $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") })
        else { return nil }
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        standard += String(repeating: "=", count: (4 - standard.count % 4) % 4)
        return Data(base64Encoded: standard).map(Array.init)
    }

    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// Why a token was not accepted. Each becomes `401 unauthenticated`; the reason is logged and
/// named in the message, never the token.
enum TokenRejection: String, Error {
    case malformed = "the token is malformed"
    case unsupportedAlgorithm = "the token's algorithm is not accepted"
    case unsupportedType = "the token's type is not accepted"
    case criticalExtension = "the token names critical extensions"
    case unknownKey = "the token's key is unknown"
    case badSignature = "the token's signature is invalid"
    case expired = "the token has expired"
    case notYetValid = "the token is not valid yet"
    case lifetimeTooLong = "the token's lifetime is too long"
    case wrongIssuer = "the token's issuer is not accepted"
    case wrongAudience = "the token's audience is not accepted"
    case missingSubject = "the token has no valid subject"
}

/// Verified claims the service relies on.
struct TokenClaims: Equatable {
    let subject: String
    let expiresAt: Int64
}

/// Verifies compact JWS tokens: HS256 with the shared secret, RS256/ES256 with JWKS keys by `kid`.
///
/// The allow-list is tied to the key: HS256 only ever uses the shared secret (so an RSA or EC
/// public key can never be used as an HMAC secret), RS256 only RSA keys, ES256 only P-256 keys,
/// and `none` or any other `alg` is refused. Nothing but the small header is parsed before the
/// signature is checked, and that with tight limits. `exp` is required; `exp`/`nbf` allow
/// `leeway`; a token may live at most `maximumLifetime` seconds (`exp − iat`, or `exp − now`
/// without `iat`), and an `iat` in the future (beyond `leeway`) is not valid yet.
struct TokenVerifier: Sendable {
    /// Longest accepted token, in bytes.
    static let maximumTokenBytes = 8192
    /// Longest accepted header, in bytes after base64url decoding: `alg`, `typ`, `kid` fit easily.
    static let maximumHeaderBytes = 512
    /// Time values outside this range are malformed (they would overflow arithmetic later).
    static let plausibleTimes: ClosedRange<Int64> = 0...32_503_680_000  // up to the year 3000
    /// `typ` values of a JWT access token (RFC 7519 §5.1, RFC 9068 §2.1), compared case-insensitively.
    static let acceptedTypes: Set<String> = ["jwt", "at+jwt", "application/jwt", "application/at+jwt"]

    let sharedSecret: [UInt8]?
    let keys: [String: PublicKey]
    let issuer: String?
    let audience: String?
    let leeway: Int64
    let maximumLifetime: Int64

    func verify(_ token: String, now: Int64) throws(TokenRejection) -> TokenClaims {
        guard token.utf8.count <= Self.maximumTokenBytes else { throw .malformed }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].utf8.count <= Self.maximumHeaderBytes * 4 / 3 + 4,
            let headerBytes = Base64URL.decode(parts[0]),
            case .object(let header)? = try? JSONParser.parse(headerBytes, maximumDepth: 2),
            case .string(let algorithm)? = header["alg"]
        else {
            throw .malformed
        }
        if let type = header["typ"] {
            guard case .string(let text) = type, Self.acceptedTypes.contains(text.lowercased()) else {
                throw .unsupportedType
            }
        }
        guard header["crit"] == nil else { throw .criticalExtension }
        guard let signature = Base64URL.decode(parts[2]) else { throw .malformed }
        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        let keyID: String? = if case .string(let kid)? = header["kid"] { kid } else { nil }
        try verifySignature(algorithm: algorithm, keyID: keyID, signature: signature, signingInput: signingInput)
        // Only a token signed by a trusted key gets its claims parsed.
        guard let payloadBytes = Base64URL.decode(parts[1]),
            case .object(let claims)? = try? JSONParser.parse(payloadBytes, maximumDepth: 4)
        else {
            throw .malformed
        }
        return try validate(claims, now: now)
    }

    private func verifySignature(
        algorithm: String, keyID: String?, signature: [UInt8],
        signingInput: [UInt8]
    ) throws(TokenRejection) {
        switch algorithm {
        case "HS256":
            guard let sharedSecret else { throw .unsupportedAlgorithm }
            let expected = Digest.hmacSHA256(key: sharedSecret, message: signingInput)
            guard Digest.constantTimeEqual(expected, signature) else { throw .badSignature }
        case "RS256", "ES256":
            guard let keyID, let key = keys[keyID] else { throw .unknownKey }
            guard key.kind == (algorithm == "RS256" ? .rsa : .ecP256) else { throw .unsupportedAlgorithm }
            guard key.verifySHA256(signature: signature, message: signingInput) else { throw .badSignature }
        default:
            throw .unsupportedAlgorithm
        }
    }

    private func validate(_ claims: [String: JSONValue], now: Int64) throws(TokenRejection) -> TokenClaims {
        guard let expiresAt = try Self.time(claims["exp"]) else { throw .malformed }
        guard now - leeway <= expiresAt else { throw .expired }
        if let notBefore = try Self.time(claims["nbf"]) {
            guard now + leeway >= notBefore else { throw .notYetValid }
        }
        // A token issued in the future would shorten its measured lifetime: not yet valid.
        let issuedAt = try Self.time(claims["iat"]) ?? now
        guard issuedAt <= now + leeway else { throw .notYetValid }
        guard expiresAt - issuedAt <= maximumLifetime else { throw .lifetimeTooLong }
        if let issuer {
            guard claims["iss"] == .string(issuer) else { throw .wrongIssuer }
        }
        if let audience {
            switch claims["aud"] {
            case .string(let value)? where value == audience: break
            case .array(let values)? where values.contains(.string(audience)): break
            default: throw .wrongAudience
            }
        }
        guard case .string(let subject)? = claims["sub"], !subject.isEmpty, subject.utf8.count <= 255,
            !subject.unicodeScalars.contains(where: \.isControlCharacter)
        else {
            throw .missingSubject
        }
        return TokenClaims(subject: subject, expiresAt: expiresAt)
    }

    /// A NumericDate claim (seconds), nil when absent; malformed when not a plausible time.
    private static func time(_ value: JSONValue?) throws(TokenRejection) -> Int64? {
        let seconds: Int64
        switch value {
        case nil: return nil
        case .int(let number)?: seconds = number
        case .double(let number)? where number.isFinite && abs(number) < 1e15: seconds = Int64(number)
        default: throw .malformed
        }
        guard plausibleTimes.contains(seconds) else { throw .malformed }
        return seconds
    }

    /// Mints an HS256 token (the `token` development command).
    static func mintHS256(secret: [UInt8], claims: [String: JSONValue]) -> String {
        let header = Base64URL.encode(JSONCoding.encode(["alg": "HS256", "typ": "JWT"]))
        let payload = Base64URL.encode(JSONCoding.encode(claims))
        let signature = Digest.hmacSHA256(key: secret, message: Array("\(header).\(payload)".utf8))
        return "\(header).\(payload).\(Base64URL.encode(signature))"
    }
}

/// Reads `AUTH_JWKS_FILE`: RSA (`n`, `e`) and P-256 (`x`, `y`) keys, each with a `kid`.
enum JWKSLoader {
    static func load(path: String) throws -> [String: PublicKey] {
        guard let data = FileManager.default.contents(atPath: path),
            case .object(let document)? = JSONValue.parse(Array(data)),
            case .array(let entries)? = document["keys"]
        else {
            throw ConfigurationError(description: "AUTH_JWKS_FILE \(path) is not a readable JWKS document")
        }
        var keys: [String: PublicKey] = [:]
        for entry in entries {
            guard case .object(let jwk) = entry, case .string(let kid)? = jwk["kid"],
                case .string(let type)? = jwk["kty"]
            else { throw ConfigurationError(description: "AUTH_JWKS_FILE: every key needs kid and kty") }
            func bytes(_ name: String) throws -> [UInt8] {
                guard case .string(let text)? = jwk[name], let value = Base64URL.decode(Substring(text)) else {
                    throw ConfigurationError(description: "AUTH_JWKS_FILE: key \(kid) lacks a valid \(name)")
                }
                return value
            }
            do {
                switch type {
                case "RSA": keys[kid] = try PublicKey.rsa(modulus: try bytes("n"), exponent: try bytes("e"))
                case "EC" where jwk["crv"] == .string("P-256"):
                    keys[kid] = try PublicKey.ecP256(x: try bytes("x"), y: try bytes("y"))
                default: throw ConfigurationError(description: "AUTH_JWKS_FILE: key \(kid) is neither RSA nor EC P-256")
                }
            } catch let error as PublicKeyError {
                throw ConfigurationError(description: "AUTH_JWKS_FILE: key \(kid): \(error.description)")
            }
        }
        return keys
    }
}
