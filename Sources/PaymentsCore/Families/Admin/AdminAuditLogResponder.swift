import Foundation
import Postgres

/// Admins read the audit log: newest first, a page at a time, filtered by entity, actor,
/// operation and time.
struct AdminAuditLogResponder {
    func addRoutes(to router: inout Router) {
        router.add(
            "GET", "/api/admin/audit-logs", access: .roles([.admin]), rateLimits: [.adminRead],
            audit: AuditTarget("audit_log.list", entity: "audit_log"), list)
    }

    private func list(_ request: Request, _ context: WorkerContext) throws -> Response {
        let entityType = try Self.word(request, "entity_type")
        let entityID = request.query["entity_id"]
        if let entityID, entityID.utf8.count > 255 { throw APIError.invalidField("entity_id", "is too long") }
        let actor = try QueryParameter.uuid(request, "actor")
        let operation = try Self.word(request, "operation")
        let since = try QueryParameter.time(request, "since")
        let until = try QueryParameter.time(request, "until")
        let limit = try QueryParameter.limit(request, standard: 100, maximum: 500)
        let cursor = try PageCursor.from(request, ids: .integer)
        // Rows are numbered in the order they were written: the id is the sort key.
        let order = SQLQuery(unsafeSQL: "a.id")
        let rows = try context.database.query(
            """
            SELECT a.id, a.id AS sort_key, iso8601(a.occurred_at) AS occurred_at, a.operation, a.entity_type, a.entity_id,
                   a.actor_profile_id::text AS actor_profile_id, a.actor_role, a.request_id, a.ip, a.user_agent,
                   a.old_values, a.new_values, a.success, a.error_code
            FROM payment_audit_logs a
            WHERE (\(entityType)::text IS NULL OR a.entity_type = \(entityType))
              AND (\(entityID)::text IS NULL OR a.entity_id = \(entityID))
              AND (\(actor)::uuid IS NULL OR a.actor_profile_id = \(actor))
              AND (\(operation)::text IS NULL OR a.operation = \(operation))
              AND (\(since)::bigint IS NULL OR a.occurred_at >= to_timestamp(\(since)))
              AND (\(until)::bigint IS NULL OR a.occurred_at < to_timestamp(\(until)))
              AND \(sql: PageCursor.after(cursor, alias: "a", sortKey: order, ids: .integer))
            ORDER BY a.id DESC LIMIT \(limit + 1)
            """
        ).rows
        let (page, next) = try PageCursor.page(rows, limit: limit)
        return .json(Page(data: try page.map(AuditRecord.init(row:)), next_cursor: next))
    }

    /// A filter that names an entity type or an operation (`payment`, `dispute.refund`).
    private static func word(_ request: Request, _ name: String) throws -> String? {
        guard let text = request.query[name] else { return nil }
        guard StoredEvent.isPlausibleType(text) else {
            throw APIError.invalidField(name, "must be lower-case words joined by dots or underscores")
        }
        return text
    }
}

/// One `payment_audit_logs` row as admins read it.
private struct AuditRecord: Encodable {
    let id: Int64
    let occurred_at, operation, entity_type: String
    @Nullable var entity_id: String?
    @Nullable var actor_profile_id: String?
    @Nullable var actor_role: String?
    @Nullable var request_id: String?
    @Nullable var ip: String?
    @Nullable var user_agent: String?
    @Nullable var error_code: String?
    @Nullable var old_values: JSONValue?
    @Nullable var new_values: JSONValue?
    let success: Bool

    init(row: Row) throws {
        id = try row.decode("id")
        occurred_at = try row.decode("occurred_at")
        operation = try row.decode("operation")
        entity_type = try row.decode("entity_type")
        entity_id = try row.decodeIfPresent("entity_id")
        actor_profile_id = try row.decodeIfPresent("actor_profile_id")
        actor_role = try row.decodeIfPresent("actor_role")
        request_id = try row.decodeIfPresent("request_id")
        ip = try row.decodeIfPresent("ip")
        user_agent = try row.decodeIfPresent("user_agent")
        error_code = try row.decodeIfPresent("error_code")
        old_values = try row.decodeIfPresent("old_values")
        new_values = try row.decodeIfPresent("new_values")
        success = try row.decode("success")
    }
}
