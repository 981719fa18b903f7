import Foundation
import Postgres

/// The signed-in caller's own data: profile and notifications.
struct AccountResponder {
    func addRoutes(to router: inout Router) {
        router.add("GET", "/api/me", access: .signedIn, me)
        router.add("GET", "/api/notifications", access: .signedIn, notifications)
        router.add(
            "POST", "/api/notifications/{id}/read", body: .json, access: .signedIn, rateLimits: [.notifications],
            audit: AuditTarget("notification.read", entity: "notification"), markRead)
    }

    private func me(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        guard
            let profile = try ProfileRow.find(
                identity.profileID, terms: context.shared.configuration.marketplace.purchaseTerms, on: context.database)
        else {
            throw APIError.notFound
        }
        struct Profile: Encodable {
            let id, user_id: String
            let roles: [String]
            @Nullable var email: String?
            @Nullable var display_name: String?
            @Nullable var stripe_account_id: String?
            let charges_enabled, payouts_enabled: Bool
        }
        return .json(
            Profile(
                id: profile.id.uuidString.lowercased(), user_id: profile.userID,
                roles: profile.roles.sorted().map(\.rawValue),
                email: profile.email, display_name: profile.displayName, stripe_account_id: profile.stripeAccountID,
                charges_enabled: profile.chargesEnabled, payouts_enabled: profile.payoutsEnabled))
    }

    /// The caller's 50 most recent notifications, newest first; `?unread=true` filters.
    private func notifications(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let unreadOnly = try QueryParameter.bool(request, "unread") ?? false
        let rows = try context.database.query(
            """
            SELECT id, kind, payload::text AS payload, iso8601(created_at) AS created_at, iso8601(read_at) AS read_at,
                   iso8601(delivered_at) AS delivered_at
            FROM notifications
            WHERE profile_id = \(identity.profileID) AND (NOT \(unreadOnly) OR read_at IS NULL)
            ORDER BY created_at DESC, id DESC LIMIT 50
            """
        ).rows
        struct Notification: Encodable {
            let id, kind, created_at: String
            let payload: JSONValue
            @Nullable var read_at: String?
            /// When it first reached the profile by email or webhook (docs/notifications.md).
            @Nullable var delivered_at: String?
        }
        let items = try rows.map { row in
            Notification(
                id: try row.decode("id"), kind: try row.decode("kind"), created_at: try row.decode("created_at"),
                payload: try row.decodeIfPresent("payload") ?? .null,
                read_at: try row.decodeIfPresent("read_at"), delivered_at: try row.decodeIfPresent("delivered_at"))
        }
        return .json(["data": items])
    }

    /// Marks one of the caller's notifications read; another profile's id is 404, not 403.
    private func markRead(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let id = try PathParameter.uuid(request, "id")
        return try context.database.withTransaction { connection in
            guard
                let row = try connection.query(
                    """
                    SELECT iso8601(read_at) AS read_at FROM notifications WHERE id = \(id) AND profile_id = \(identity.profileID) FOR UPDATE
                    """
                ).first
            else { throw APIError.notFound }
            let previous: String? = try row.decodeIfPresent("read_at")
            if let previous { return .json(["id": id.uuidString.lowercased(), "read_at": previous]) }
            // The row is locked above, so the update finds it.
            guard
                let updated = try connection.query(
                    """
                    UPDATE notifications SET read_at = now() WHERE id = \(id) RETURNING iso8601(read_at) AS read_at
                    """
                ).first
            else { throw APIError.notFound }
            let readAt: String = try updated.decode("read_at")
            try AuditLog.record(
                AuditEntry(
                    operation: "notification.read", entityType: "notification",
                    entityID: id.uuidString.lowercased(), oldValues: .object(["read_at": .null]),
                    newValues: .object(["read_at": .string(readAt)])),
                request: request, on: connection)
            return .json(["id": id.uuidString.lowercased(), "read_at": readAt])
        }
    }
}
