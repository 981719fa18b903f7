import Cryptography
import Foundation

/// The `state` of Connect onboarding links: which profile and account a redirect belongs to,
/// until when, signed with HMAC-SHA256 so that the seller's browser (which carries no Bearer
/// token) cannot forge or alter it. The key is derived from `STRIPE_SECRET_KEY`, so no extra
/// secret needs configuring and nothing guessable signs it.
struct OnboardingState: Equatable {
    /// How long a state stays valid (onboarding can take a while; links themselves expire sooner).
    static let lifetime: Int64 = 2 * 3600

    let profileID: String
    let accountID: String
    let expiresAt: Int64
    let nonce: String

    /// Why a state was refused (shown on the error page, never a redirect).
    enum Failure: String, Error {
        case missing, malformed, forged, expired
    }

    /// `base64url(profile|account|expiry|nonce).base64url(hmac)`.
    func encoded(key: [UInt8]) -> String {
        let payload = Array("\(profileID)|\(accountID)|\(expiresAt)|\(nonce)".utf8)
        return Base64URL.encode(payload) + "." + Base64URL.encode(Digest.hmacSHA256(key: key, message: payload))
    }

    /// Verifies signature (constant time) and expiry.
    static func decode(_ text: String?, key: [UInt8], now: Int64) throws(Failure) -> OnboardingState {
        guard let text, !text.isEmpty else { throw .missing }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard text.utf8.count <= 512, parts.count == 2, let payload = Base64URL.decode(parts[0]),
              let signature = Base64URL.decode(parts[1]) else { throw .malformed }
        guard Digest.constantTimeEqual(Digest.hmacSHA256(key: key, message: payload), signature) else { throw .forged }
        let fields = String(decoding: payload, as: UTF8.self).split(separator: "|", omittingEmptySubsequences: false)
        guard fields.count == 4, let expiresAt = Int64(fields[2]) else { throw .malformed }
        guard now <= expiresAt else { throw .expired }
        return OnboardingState(profileID: String(fields[0]), accountID: String(fields[1]), expiresAt: expiresAt,
                               nonce: String(fields[3]))
    }

    /// A fresh state for a profile's account.
    static func make(profileID: String, accountID: String, now: Int64) -> OnboardingState {
        OnboardingState(profileID: profileID, accountID: accountID, expiresAt: now + lifetime,
                        nonce: Hex.encode(Digest.randomBytes(8)))
    }

    /// The signing key: HMAC(STRIPE_SECRET_KEY, purpose).
    static func key(stripeSecretKey: String) -> [UInt8] {
        Digest.hmacSHA256(key: Array(stripeSecretKey.utf8), message: Array("connect-onboarding-state-v1".utf8))
    }
}
