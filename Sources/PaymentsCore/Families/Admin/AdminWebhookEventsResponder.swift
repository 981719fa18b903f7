import Foundation
import Postgres

/// Admins watch the webhook inbox's backlog and replay one event (its effects are idempotent).
struct AdminWebhookEventsResponder {
    func addRoutes(to router: inout Router) {
        let admin = Access.roles([.admin])
        router.add(
            "GET", "/api/admin/webhook-events", access: admin, rateLimits: [.adminRead],
            audit: AuditTarget("webhook_event.list", entity: "webhook_event"), list)
        router.add(
            "POST", "/api/admin/webhook-events/{id}/replay", body: .json, access: admin, rateLimits: [.adminReplay],
            audit: AuditTarget("webhook_event.replay", entity: "webhook_event"), replay)
    }

    /// Stored events, newest first, filtered by status and type; payloads stay out of the list.
    private func list(_ request: Request, _ context: WorkerContext) throws -> Response {
        let status = try QueryParameter.choice(request, "status", from: StoredEvent.statuses)
        let type = request.query["type"]
        if let type, !StoredEvent.isPlausibleType(type) {
            throw APIError.invalidField("type", "is not an event type (such as payment_intent.succeeded)")
        }
        let limit = try QueryParameter.limit(request, standard: 50)
        let cursor = try PageCursor.from(request, ids: .stripe)
        let rows = try context.database.query(
            """
            SELECT \(sql: StoredEvent.columns), \(sql: PageCursor.sortKey("e", column: "received_at")) AS sort_key
            FROM webhook_events e
            WHERE (\(status)::text IS NULL OR e.status = \(status)) AND (\(type)::text IS NULL OR e.type = \(type))
              AND \(sql: PageCursor.after(cursor, alias: "e", sortKey: PageCursor.sortKey("e", column: "received_at"), ids: .stripe))
            ORDER BY e.received_at DESC, e.id DESC LIMIT \(limit + 1)
            """
        ).rows
        let (page, next) = try PageCursor.page(rows, limit: limit)
        return .json(Page(data: try page.map(StoredEvent.init(row:)), next_cursor: next))
    }

    /// Applies one stored event again, whatever its status, and answers the event as it is
    /// after the attempt (an effect that fails again leaves it `failed` with its error).
    private func replay(_ request: Request, _ context: WorkerContext) throws -> Response {
        let id = try PathParameter.stripeID(request, "id", prefix: "evt_")
        guard let before = try StoredEvent.find(id, on: context.database) else { throw APIError.notFound }
        let inbox = WebhookInbox(
            connection: context.database, audit: AuditContext(request: request), followUps: context.shared.followUps,
            payoutDelayDays: context.shared.configuration.marketplace.payoutDelayDays)
        var failure: String?
        do {
            _ = try inbox.reprocess(eventID: id)
        } catch let error as DatabaseError where error.isTransient {
            throw error
        } catch is WebhookPayloadExpired {
            throw APIError(.payloadExpired)
        } catch {
            failure = "the effect failed again"  // its error is stored on the row
        }
        guard let after = try StoredEvent.find(id, on: context.database) else { throw APIError.notFound }
        try AuditLog.record(
            AuditEntry(
                operation: "webhook_event.replay", entityType: "webhook_event", entityID: id,
                oldValues: ["status": .string(before.status)], newValues: ["status": .string(after.status)],
                success: failure == nil, errorCode: failure.map { _ in "webhook_processing_failed" }),
            request: request, on: context.database)
        return .json(after)
    }
}

/// A `webhook_events` row without its payload, as admins see it.
struct StoredEvent: Encodable {
    static let statuses = ["received", "processed", "parked", "failed", "ignored", "dead"]

    let id: String
    let endpoint: String
    let type: String
    let created: Int64
    @Nullable var account: String?
    @Nullable var object_id: String?
    let status: String
    let attempts: Int
    @Nullable var next_attempt_at: String?
    @Nullable var last_error: String?
    let received_at: String
    @Nullable var processed_at: String?
    /// The raw body's size; null once the retention policy dropped it (`WEBHOOK_PAYLOAD_RETENTION_DAYS`).
    @Nullable var payload_bytes: Int?

    static let columns = SQLQuery(
        unsafeSQL: """
            e.id, e.endpoint, e.type, e.created, e.account, e.object_id, e.status, e.attempts,
            iso8601(e.next_attempt_at) AS next_attempt_at, e.last_error, iso8601(e.received_at) AS received_at,
            iso8601(e.processed_at) AS processed_at, octet_length(e.payload) AS payload_bytes
            """)

    init(row: Row) throws {
        id = try row.decode("id")
        endpoint = try row.decode("endpoint")
        type = try row.decode("type")
        created = try row.decode("created")
        account = try row.decodeIfPresent("account")
        object_id = try row.decodeIfPresent("object_id")
        status = try row.decode("status")
        attempts = try row.decode("attempts")
        next_attempt_at = try row.decodeIfPresent("next_attempt_at")
        last_error = try row.decodeIfPresent("last_error")
        received_at = try row.decode("received_at")
        processed_at = try row.decodeIfPresent("processed_at")
        payload_bytes = try row.decodeIfPresent("payload_bytes")
    }

    static func find(_ id: String, on connection: some SQLExecutor) throws -> StoredEvent? {
        try connection.query("SELECT \(sql: columns) FROM webhook_events e WHERE e.id = \(id)").first.map(
            StoredEvent.init(row:))
    }

    /// Lower-case words joined by dots and underscores, at most 100 characters.
    static func isPlausibleType(_ text: String) -> Bool {
        (1...100).contains(text.utf8.count)
            && text.utf8.allSatisfy {
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || $0 == UInt8(ascii: ".")
                    || $0 == UInt8(ascii: "_")
            }
    }
}
