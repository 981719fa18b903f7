import Foundation
import Postgres

/// Admins see the notification deliveries that need attention — dead ones (the sweeper gave
/// up), failing ones (still retried) — and send a dead one again.
struct AdminNotificationsResponder {
    func addRoutes(to router: inout Router) {
        let admin = Access.roles([.admin])
        router.add(
            "GET", "/api/admin/notifications", access: admin, rateLimits: [.adminRead],
            audit: AuditTarget("notification_delivery.list", entity: "notification_delivery"), list)
        router.add(
            "POST", "/api/admin/notifications/{id}/retry", body: .json, access: admin, rateLimits: [.adminReplay],
            audit: AuditTarget("notification_delivery.retry", entity: "notification_delivery"), retry)
    }

    /// Deliveries, newest first: `state=dead` (default), `failing` (pending after a failed
    /// attempt), `pending`, `delivered` or `skipped`; `channel` filters.
    private func list(_ request: Request, _ context: WorkerContext) throws -> Response {
        let state = try QueryParameter.choice(request, "state", from: NotificationDelivery.listStates) ?? "dead"
        let channel = try QueryParameter.choice(request, "channel", from: NotificationChannel.allCases.map(\.rawValue))
        let limit = try QueryParameter.limit(request, standard: 50)
        let cursor = try PageCursor.from(request, ids: .integer)
        let failing = state == "failing"
        let rows = try context.database.query(
            """
            SELECT \(sql: NotificationDelivery.columns), \(sql: PageCursor.sortKey("d")) AS sort_key
            FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id
            WHERE d.state = \(failing ? "pending" : state) AND (NOT \(failing)::boolean OR d.attempts > 0)
              AND (\(channel)::text IS NULL OR d.channel = \(channel))
              AND \(sql: PageCursor.after(cursor, alias: "d", ids: .integer))
            ORDER BY d.created_at DESC, d.id DESC LIMIT \(limit + 1)
            """
        ).rows
        let (page, next) = try PageCursor.page(rows, limit: limit)
        return .json(Page(data: try page.map(NotificationDelivery.init(row:)), next_cursor: next))
    }

    /// Puts a dead delivery back in the queue with a fresh count of attempts; the next sweep
    /// delivers it. `409 delivery_not_dead` for any other state.
    private func retry(_ request: Request, _ context: WorkerContext) throws -> Response {
        guard let text = request.pathParameters["id"], text.utf8.count <= 18, let id = Int64(text), id > 0 else {
            throw APIError.invalidField("id", "must be a delivery id (a positive integer)")
        }
        return try context.database.withTransaction { connection in
            guard let before = try NotificationDelivery.find(id, lockingOn: connection) else { throw APIError.notFound }
            guard before.state == "dead" else { throw APIError(.deliveryNotDead) }
            try connection.query(
                """
                UPDATE notification_deliveries SET state = 'pending', attempts = 0, next_attempt_at = now()
                WHERE id = \(id)
                """)
            guard let after = try NotificationDelivery.find(id, lockingOn: connection) else { throw APIError.notFound }
            try AuditLog.record(
                AuditEntry(
                    operation: "notification_delivery.retry", entityType: "notification_delivery",
                    entityID: String(id),
                    oldValues: ["state": .string(before.state), "attempts": .int(Int64(before.attempts))],
                    newValues: ["state": .string(after.state), "attempts": .int(Int64(after.attempts))],
                    metadata: ["notification_id": .string(after.notification_id), "channel": .string(after.channel)]),
                request: request, on: connection)
            return .json(after)
        }
    }
}

/// A `notification_deliveries` row with its notification's kind and recipient, as admins see
/// it (never the payload: it may name people).
struct NotificationDelivery: Encodable {
    static let listStates = ["dead", "failing", "pending", "delivered", "skipped"]

    let id: Int64
    let notification_id: String
    let channel: String
    let state: String
    let attempts: Int
    let kind: String
    let profile_id: String
    @Nullable var last_error: String?
    @Nullable var next_attempt_at: String?
    @Nullable var last_attempt_at: String?
    @Nullable var delivered_at: String?
    let created_at: String

    static let columns = SQLQuery(
        unsafeSQL: """
            d.id, d.notification_id::text AS notification_id, d.channel, d.state, d.attempts, n.kind,
            n.profile_id::text AS profile_id, d.last_error, iso8601(d.next_attempt_at) AS next_attempt_at,
            iso8601(d.last_attempt_at) AS last_attempt_at, iso8601(d.delivered_at) AS delivered_at,
            iso8601(d.created_at) AS created_at
            """)

    init(row: Row) throws {
        id = try row.decode("id")
        notification_id = try row.decode("notification_id")
        channel = try row.decode("channel")
        state = try row.decode("state")
        attempts = try row.decode("attempts")
        kind = try row.decode("kind")
        profile_id = try row.decode("profile_id")
        last_error = try row.decodeIfPresent("last_error")
        next_attempt_at = try row.decodeIfPresent("next_attempt_at")
        last_attempt_at = try row.decodeIfPresent("last_attempt_at")
        delivered_at = try row.decodeIfPresent("delivered_at")
        created_at = try row.decode("created_at")
    }

    /// The delivery, its row locked for the caller's transaction.
    static func find(_ id: Int64, lockingOn connection: some SQLExecutor) throws -> NotificationDelivery? {
        try connection.query(
            """
            SELECT \(sql: columns) FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id
            WHERE d.id = \(id) FOR UPDATE OF d
            """
        ).first.map(NotificationDelivery.init(row:))
    }
}
