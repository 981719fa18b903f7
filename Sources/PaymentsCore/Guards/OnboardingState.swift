import Cryptography
import Foundation
import Postgres

/// The `state` of Connect onboarding links: which profile and account a redirect belongs to,
/// until when, signed with HMAC-SHA256 so that the seller's browser (which carries no Bearer
/// token) cannot forge or alter it. The key is derived from `STRIPE_SECRET_KEY`, so no extra
/// secret needs configuring and nothing guessable signs it.
struct OnboardingState: Equatable {
    /// How long a state stays valid: longer than the account link it comes with lives (Stripe's
    /// expire within minutes) plus a sitting at Stripe's forms, short enough that a state found
    /// later (history, a shared screen) is useless. After it, the seller starts again from the
    /// marketplace; the `account.updated` webhook syncs the account whatever the redirect does.
    static let lifetime: Int64 = 30 * 60

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
            let signature = Base64URL.decode(parts[1])
        else { throw .malformed }
        guard Digest.constantTimeEqual(Digest.hmacSHA256(key: key, message: payload), signature) else { throw .forged }
        let fields = String(decoding: payload, as: UTF8.self).split(separator: "|", omittingEmptySubsequences: false)
        guard fields.count == 4, let expiresAt = Int64(fields[2]) else { throw .malformed }
        guard now <= expiresAt else { throw .expired }
        return OnboardingState(
            profileID: String(fields[0]), accountID: String(fields[1]), expiresAt: expiresAt,
            nonce: String(fields[3]))
    }

    /// A fresh state for a profile's account.
    static func make(profileID: String, accountID: String, now: Int64) -> OnboardingState {
        OnboardingState(
            profileID: profileID, accountID: accountID, expiresAt: now + lifetime,
            nonce: Hex.encode(Digest.randomBytes(8)))
    }

    /// The signing key: HMAC(STRIPE_SECRET_KEY, purpose).
    static func key(stripeSecretKey: String) -> [UInt8] {
        Digest.hmacSHA256(key: Array(stripeSecretKey.utf8), message: Array("connect-onboarding-state-v1".utf8))
    }
}

/// Single use at the refresh endpoint: the state's nonce is recorded in `onboarding_state_nonces`
/// until the state expires (`payments sweep` deletes it after that), so a reused or concurrently
/// replayed state can mint no second account link.
extension OnboardingState {
    /// Records the nonce; false when it was recorded already (the state was used).
    func claimNonce(on connection: some SQLExecutor) throws -> Bool {
        try connection.query(
            """
            INSERT INTO onboarding_state_nonces (nonce, profile_id, expires_at)
            VALUES (\(nonce), \(profileID)::uuid, to_timestamp(\(expiresAt)))
            ON CONFLICT (nonce) DO NOTHING RETURNING nonce
            """
        ).first != nil
    }

    /// Forgets the nonce again, when no link could be minted for it, so the seller can retry.
    func releaseNonce(on connection: some SQLExecutor) throws {
        try connection.query("DELETE FROM onboarding_state_nonces WHERE nonce = \(nonce)")
    }
}
