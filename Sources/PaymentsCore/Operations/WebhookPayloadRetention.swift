import Postgres

/// The retention policy for stored webhook payloads (`WEBHOOK_PAYLOAD_RETENTION_DAYS`, default
/// 90; 0 keeps them for good), a sweep task: the raw bytes of processed and ignored events older
/// than that are dropped, the row and the bytes' SHA-256 kept (`webhook_drop_old_payloads`,
/// sql/0019). Stripe retries for 3 days and its Events API keeps 30, so 90 days leaves every
/// recovery path open. Each run reads at most `batchesPerRun` batches, so a first run over a
/// long history is spread over several sweeps.
struct WebhookPayloadRetention {
    let days: Int
    static let batchSize = 5_000
    static let batchesPerRun = 20

    init(environment: Environment) throws {
        days = try environment.integer("WEBHOOK_PAYLOAD_RETENTION_DAYS", default: 90, in: 0...3650)
    }

    /// Drops what is due; returns how many payloads were dropped.
    func run(on connection: some SQLExecutor) throws -> Int {
        guard days > 0 else { return 0 }
        var dropped = 0
        for _ in 0..<Self.batchesPerRun {
            guard
                let row = try connection.query(
                    "SELECT dropped, more FROM webhook_drop_old_payloads(\(days), \(Self.batchSize))"
                ).first
            else { break }
            dropped += try row.decode("dropped", as: Int.self)
            guard try row.decode("more", as: Bool.self) else { break }
        }
        return dropped
    }
}
