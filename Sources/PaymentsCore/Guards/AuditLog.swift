import Foundation
import Postgres

/// One audit record: what was attempted on which entity, with old and new values.
public struct AuditEntry: Sendable {
    /// Dotted operation name, e.g. `payment.capture`.
    public var operation: String
    /// `payment`, `dispute`, `notification`, …
    public var entityType: String
    /// The entity's id, when known.
    public var entityID: String?
    /// Values before the change (JSON).
    public var oldValues: JSONValue?
    /// Values after the change (JSON).
    public var newValues: JSONValue?
    /// Whether the action succeeded.
    public var success: Bool
    /// The error code of a failed attempt.
    public var errorCode: String?
    /// Anything else worth keeping (never secrets).
    public var metadata: [String: JSONValue]

    /// Creates an entry; success by default.
    public init(
        operation: String, entityType: String, entityID: String?, oldValues: JSONValue? = nil,
        newValues: JSONValue? = nil, success: Bool = true, errorCode: String? = nil,
        metadata: [String: JSONValue] = [:]
    ) {
        self.operation = operation
        self.entityType = entityType
        self.entityID = entityID
        self.oldValues = oldValues
        self.newValues = newValues
        self.success = success
        self.errorCode = errorCode
        self.metadata = metadata
    }
}

/// Who acted and through which request: a signed-in profile, Stripe (webhooks), or an operator's
/// command (sweeper, replay).
public struct AuditContext: Sendable {
    /// `profiles.id` of the actor, when a person acted.
    public let actorProfileID: UUID?
    /// `buyer`/`seller`/`admin`, or `stripe`/`system` for automated actors.
    public let actorRole: String?
    /// The request id (nginx's), or a generated one for commands.
    public let requestID: String?
    /// The client IP, port stripped.
    public let ip: String?
    /// The user agent, truncated.
    public let userAgent: String?

    /// The context of an API request.
    public init(request: Request, actorRole: String? = nil) {
        actorProfileID = request.identity?.profileID
        self.actorRole = actorRole ?? request.identity?.rolesDescription
        requestID = request.requestID
        ip = RateLimiter.clientIP(request.remoteAddress)
        userAgent = request.userAgent.map { String($0.prefix(512)) }
    }

    /// An automated actor with no request (`system` for the sweeper and CLI).
    public static func system(_ command: String) -> AuditContext {
        AuditContext(actorProfileID: nil, actorRole: "system", requestID: nil, ip: nil, userAgent: command)
    }

    private init(actorProfileID: UUID?, actorRole: String?, requestID: String?, ip: String?, userAgent: String?) {
        self.actorProfileID = actorProfileID
        self.actorRole = actorRole
        self.requestID = requestID
        self.ip = ip
        self.userAgent = userAgent
    }
}

/// Writes `payment_audit_logs` rows. Call it on the connection of the transaction that makes the
/// change, so the record and the change commit or roll back together. The table is append-only
/// (a trigger rejects UPDATE, DELETE and TRUNCATE).
public enum AuditLog {
    /// Records `entry` with the request's actor, request id, IP and user agent.
    public static func record(_ entry: AuditEntry, request: Request, on connection: some SQLExecutor) throws {
        try record(entry, context: AuditContext(request: request), on: connection)
    }

    /// Records `entry` with an explicit actor context.
    public static func record(_ entry: AuditEntry, context: AuditContext, on connection: some SQLExecutor) throws {
        let old = entry.oldValues.map { String(decoding: JSONCoding.encode($0), as: UTF8.self) }
        let new = entry.newValues.map { String(decoding: JSONCoding.encode($0), as: UTF8.self) }
        let metadata = String(decoding: JSONCoding.encode(entry.metadata), as: UTF8.self)
        try connection.query(
            """
            INSERT INTO payment_audit_logs
                (operation, entity_type, entity_id, actor_profile_id, actor_role, request_id, ip, user_agent,
                 old_values, new_values, success, error_code, metadata)
            VALUES (\(entry.operation), \(entry.entityType), \(entry.entityID), \(context.actorProfileID),
                    \(context.actorRole), \(context.requestID), \(context.ip), \(context.userAgent), \(old)::jsonb,
                    \(new)::jsonb, \(entry.success), \(entry.errorCode), \(metadata)::jsonb)
            """)
    }
}
