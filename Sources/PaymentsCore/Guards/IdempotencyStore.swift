import Cryptography
import Postgres

/// What to do with a request that carries an `Idempotency-Key`.
enum IdempotencyDecision {
    /// First use of the key (or a takeover): run the handler, then `complete` or `release`
    /// with this claim's owner name.
    case proceed(owner: String)
    /// The key was used before with the same request: answer with the stored response.
    case replay(Response)
}

/// `Idempotency-Key` semantics for POST routes, per (profile, key):
/// same key and same method+route+body → the stored status and body, without running the handler;
/// a different request → `422 idempotency_key_reused`; the first still running → `409
/// idempotency_in_progress` — unless that request can no longer be running (see `begin`).
/// Keys are purged by the sweeper after 24 h.
///
/// Stored responses carry client secrets and onboarding links, so their bodies are sealed
/// (AES-256-GCM, `SealedBox`) under a key derived from `STRIPE_SECRET_KEY`: a database dump or
/// a read-only role shows none of them.
struct IdempotencyStore {
    /// Marks a sealed stored body (rows written before sealing began hold plain JSON).
    static let sealedMarker: UInt8 = 0x01

    /// The sealing key: HMAC-SHA256 of a fixed label under the Stripe secret key.
    static func sealingKey(stripeSecretKey: String) -> [UInt8] {
        Digest.hmacSHA256(key: Array(stripeSecretKey.utf8), message: Array("idempotency-stored-responses-v1".utf8))
    }

    /// Validates the header value: 1–255 printable ASCII characters.
    static func validatedKey(_ header: String?) throws -> String? {
        guard let header else { return nil }
        guard (1...255).contains(header.utf8.count), header.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) else {
            throw APIError.invalidField("Idempotency-Key", "must be 1 to 255 printable ASCII characters without spaces")
        }
        return header
    }

    /// SHA-256 over method, route pattern, concrete path and body.
    static func requestHash(_ request: Request, route: String) -> String {
        let head = Array("\(request.method)\n\(route)\n\(request.path)\n".utf8)
        return Hex.encode(Digest.sha256(head + request.body))
    }

    /// Claims the key, or explains why the request must not run. A key still `in_progress`
    /// whose request can no longer be running — its lease (`lease`, the longest a request can
    /// take) ran out, or its owner process is gone — is taken over by this request, which then
    /// finishes or compensates the first attempt's work through the same Stripe keys.
    static func begin(
        profileID: String, key: String, route: String, hash: String, lease: Duration, sealingKey: [UInt8],
        on connection: some SQLExecutor
    ) throws -> IdempotencyDecision {
        let owner = RequestOwner.make()
        let leaseSeconds = Double(lease.components.seconds)
        let inserted = try connection.query(
            """
            INSERT INTO idempotency_keys (profile_id, key, route, request_hash, status, owner, lease_expires_at)
            VALUES (\(profileID)::uuid, \(key), \(route), \(hash), 'in_progress', \(owner),
                    now() + make_interval(secs => \(leaseSeconds)))
            ON CONFLICT (profile_id, key) DO NOTHING
            """)
        if inserted.affectedRows == 1 { return .proceed(owner: owner) }
        guard
            let row = try connection.query(
                """
                SELECT request_hash, status, response_status, response_body, owner,
                       COALESCE(lease_expires_at <= now(), created_at < now() - interval '1 hour') AS lease_over
                FROM idempotency_keys WHERE profile_id = \(profileID)::uuid AND key = \(key)
                """
            ).first
        else {
            // Deleted between our insert and select (its first use failed transiently): claim it again.
            return try begin(
                profileID: profileID, key: key, route: route, hash: hash, lease: lease, sealingKey: sealingKey,
                on: connection)
        }
        guard try row.decode("request_hash", as: String.self) == hash else {
            throw APIError(.idempotencyKeyReused)
        }
        let holder: String? = try row.decodeIfPresent("owner")
        if try row.decode("status", as: String.self) == "completed" {
            // A completed key always stored its answer (`complete` writes both in one UPDATE).
            let status: Int = try row.decode("response_status")
            let stored: [UInt8] = try row.decode("response_body")
            guard
                let body = stored.first == sealedMarker
                    ? SealedBox.open(Array(stored.dropFirst()), key: sealingKey) : stored
            else {
                // Sealed under an earlier STRIPE_SECRET_KEY: the work is done, its answer unreadable.
                throw APIError(
                    .idempotencyKeyReused,
                    message: "This Idempotency-Key was used before and its stored answer can no longer be read.")
            }
            return .replay(Response(status: status, headers: [("Idempotent-Replayed", "true")], body: body))
        }
        if try row.decode("lease_over", as: Bool.self) || RequestOwner.isGone(holder),
            try connection.query(
                """
                UPDATE idempotency_keys SET owner = \(owner), lease_expires_at = now() + make_interval(secs => \(leaseSeconds))
                WHERE profile_id = \(profileID)::uuid AND key = \(key) AND status = 'in_progress'
                  AND owner IS NOT DISTINCT FROM \(holder)
                """
            ).affectedRows == 1
        {
            return .proceed(owner: owner)
        }
        throw APIError(
            .idempotencyInProgress,
            headers: [("Retry-After", "1")])
    }

    /// Stores the final response for replays (unless another request took the key over).
    static func complete(
        profileID: String, key: String, owner: String, response: Response, sealingKey: [UInt8],
        on connection: some SQLExecutor
    ) throws {
        let sealed = [sealedMarker] + SealedBox.seal(response.body, key: sealingKey)
        try connection.query(
            """
            UPDATE idempotency_keys SET status = 'completed', response_status = \(response.status),
                   response_body = \(ByteA(sealed))
            WHERE profile_id = \(profileID)::uuid AND key = \(key) AND owner = \(owner)
            """)
    }

    /// Releases the key after a transient failure, so the client's retry runs again (unless
    /// another request took the key over: then it is that request's).
    static func release(profileID: String, key: String, owner: String, on connection: some SQLExecutor) {
        _ = try? connection.query(
            """
            DELETE FROM idempotency_keys
            WHERE profile_id = \(profileID)::uuid AND key = \(key) AND status = 'in_progress' AND owner = \(owner)
            """)
    }
}
