internal import CCrypto

/// Why a public key could not be built from its JWK parameters.
public struct PublicKeyError: Error, CustomStringConvertible {
    /// What was wrong.
    public let description: String
}

/// An RSA or P-256 public key (libcrypto `EVP_PKEY`) that verifies SHA-256 signatures:
/// RS256 (RSASSA-PKCS1-v1_5) and ES256 (ECDSA, JOSE's raw `r‖s` form).
///
/// Keys are built once at start-up and only read afterwards; OpenSSL 3 allows concurrent
/// verification with one `EVP_PKEY`, hence `@unchecked Sendable`.
public final class PublicKey: @unchecked Sendable {
    /// The algorithm family; a token's `alg` must match it.
    public enum Kind: Sendable { case rsa, ecP256 }

    /// RSA or EC.
    public let kind: Kind
    private let key: OpaquePointer

    private init(kind: Kind, key: OpaquePointer) {
        self.kind = kind
        self.key = key
    }

    deinit {
        EVP_PKEY_free(key)
    }

    /// An RSA key from big-endian modulus and exponent (JWK `n`, `e`); at least 2048 bits.
    public static func rsa(modulus: [UInt8], exponent: [UInt8]) throws -> PublicKey {
        guard modulus.count >= 256 else { throw PublicKeyError(description: "RSA modulus shorter than 2048 bits") }
        guard let builder = OSSL_PARAM_BLD_new() else { throw PublicKeyError(description: "out of memory") }
        defer { OSSL_PARAM_BLD_free(builder) }
        let n = modulus.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, Int32($0.count), nil) }
        let e = exponent.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, Int32($0.count), nil) }
        defer {
            BN_free(n)
            BN_free(e)
        }
        guard let n, let e, ccrypto_push_rsa_public(builder, n, e) == 1 else {
            throw PublicKeyError(description: "invalid RSA parameters")
        }
        return PublicKey(kind: .rsa, key: try makeKey(type: "RSA", builder: builder))
    }

    /// A P-256 key from its 32-byte affine coordinates (JWK `x`, `y`); the point must be on the curve.
    public static func ecP256(x: [UInt8], y: [UInt8]) throws -> PublicKey {
        guard x.count == 32, y.count == 32 else {
            throw PublicKeyError(description: "P-256 coordinates must be 32 bytes")
        }
        guard let builder = OSSL_PARAM_BLD_new() else { throw PublicKeyError(description: "out of memory") }
        defer { OSSL_PARAM_BLD_free(builder) }
        let point: [UInt8] = [0x04] + x + y
        // The builder reads `point` when the key is made, so both happen while it is pinned.
        let key = try point.withUnsafeBufferPointer { bytes in
            guard ccrypto_push_p256_public(builder, bytes.baseAddress, bytes.count) == 1 else {
                throw PublicKeyError(description: "invalid EC parameters")
            }
            return try makeKey(type: "EC", builder: builder)
        }
        // EVP_PKEY_fromdata does not check that the point lies on the curve; do it explicitly.
        guard let context = EVP_PKEY_CTX_new_from_pkey(nil, key, nil) else {
            EVP_PKEY_free(key)
            throw PublicKeyError(description: "out of memory")
        }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_public_check(context) == 1 else {
            EVP_PKEY_free(key)
            throw PublicKeyError(description: "EC point is not on P-256")
        }
        return PublicKey(kind: .ecP256, key: key)
    }

    private static func makeKey(type: String, builder: OpaquePointer) throws -> OpaquePointer {
        guard let parameters = OSSL_PARAM_BLD_to_param(builder) else {
            throw PublicKeyError(description: "out of memory")
        }
        defer { OSSL_PARAM_free(parameters) }
        guard let context = EVP_PKEY_CTX_new_from_name(nil, type, nil) else {
            throw PublicKeyError(description: "libcrypto has no \(type) support")
        }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer?
        guard EVP_PKEY_fromdata_init(context) == 1,
            EVP_PKEY_fromdata(context, &key, CCRYPTO_EVP_PKEY_PUBLIC_KEY, parameters) == 1, let key
        else {
            throw PublicKeyError(description: "libcrypto rejected the \(type) key")
        }
        return key
    }

    /// Verifies a SHA-256 signature over `message`. For EC keys `signature` is JOSE's 64-byte `r‖s`.
    public func verifySHA256(signature: [UInt8], message: [UInt8]) -> Bool {
        let encoded: [UInt8]
        switch kind {
        case .rsa:
            encoded = signature
        case .ecP256:
            guard signature.count == 64, let der = Self.derSignature(raw: signature) else { return false }
            encoded = der
        }
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, EVP_sha256(), nil, key) == 1 else { return false }
        let result = encoded.withUnsafeBufferPointer { sig in
            message.withUnsafeBufferPointer { msg in
                EVP_DigestVerify(context, sig.baseAddress, sig.count, msg.baseAddress, msg.count)
            }
        }
        return result == 1
    }

    /// JOSE ECDSA signatures are `r‖s`; libcrypto wants DER.
    private static func derSignature(raw: [UInt8]) -> [UInt8]? {
        guard let signature = ECDSA_SIG_new() else { return nil }
        defer { ECDSA_SIG_free(signature) }
        let r = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, 32, nil) }
        let s = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress.map { $0 + 32 }, 32, nil) }
        guard let r, let s else {
            BN_free(r)
            BN_free(s)
            return nil
        }
        guard ECDSA_SIG_set0(signature, r, s) == 1 else {  // takes ownership of r and s
            BN_free(r)
            BN_free(s)
            return nil
        }
        var output: UnsafeMutablePointer<UInt8>?
        let length = i2d_ECDSA_SIG(signature, &output)
        guard length > 0, let output else { return nil }
        defer { CRYPTO_free(output, #fileID, #line) }
        return Array(UnsafeBufferPointer(start: output, count: Int(length)))
    }
}
