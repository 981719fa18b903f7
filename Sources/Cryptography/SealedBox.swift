internal import CCrypto

/// AES-256-GCM authenticated encryption from libcrypto, for data the service stores and reads
/// back itself (so the key never leaves the process). A sealed box is
/// `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`, with a fresh random nonce each time.
public enum SealedBox {
    /// Bytes a sealed box adds to its plaintext.
    public static let overhead = 28

    /// Encrypts and authenticates `plaintext` under a 32-byte `key`.
    public static func seal(_ plaintext: [UInt8], key: [UInt8]) -> [UInt8] {
        precondition(key.count == 32, "AES-256-GCM takes a 32-byte key")
        let nonce = Digest.randomBytes(12)
        var output = [UInt8](repeating: 0, count: plaintext.count + 16)
        var tag = [UInt8](repeating: 0, count: 16)
        let context = EVP_CIPHER_CTX_new()
        defer { EVP_CIPHER_CTX_free(context) }
        var written: Int32 = 0
        var finalWritten: Int32 = 0
        let ok =
            EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nil, key, nonce) == 1
            && output.withUnsafeMutableBufferPointer { out in
                EVP_EncryptUpdate(context, out.baseAddress, &written, plaintext, Int32(plaintext.count)) == 1
                    && EVP_EncryptFinal_ex(context, out.baseAddress.map { $0 + Int(written) }, &finalWritten) == 1
            }
            && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, 16, &tag) == 1
        precondition(ok, "AES-256-GCM encryption cannot fail for in-memory input")
        return nonce + output.prefix(Int(written + finalWritten)) + tag
    }

    /// The plaintext of a box sealed under `key`; nil when it was altered or sealed under another key.
    public static func open(_ box: [UInt8], key: [UInt8]) -> [UInt8]? {
        guard key.count == 32, box.count >= overhead else { return nil }
        let nonce = Array(box.prefix(12))
        let ciphertext = Array(box.dropFirst(12).dropLast(16))
        var tag = Array(box.suffix(16))
        var output = [UInt8](repeating: 0, count: ciphertext.count + 16)
        let context = EVP_CIPHER_CTX_new()
        defer { EVP_CIPHER_CTX_free(context) }
        var written: Int32 = 0
        var finalWritten: Int32 = 0
        let ok =
            EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nil, key, nonce) == 1
            && output.withUnsafeMutableBufferPointer { out in
                EVP_DecryptUpdate(context, out.baseAddress, &written, ciphertext, Int32(ciphertext.count)) == 1
            }
            && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, 16, &tag) == 1
            && output.withUnsafeMutableBufferPointer { out in
                EVP_DecryptFinal_ex(context, out.baseAddress.map { $0 + Int(written) }, &finalWritten) == 1
            }
        return ok ? Array(output.prefix(Int(written + finalWritten))) : nil
    }
}
