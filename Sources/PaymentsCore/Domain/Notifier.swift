import Foundation
import Postgres

/// Writes `notifications` rows in the caller's transaction, so a notification exists exactly
/// when the change it announces was committed. `payments sweep` then delivers each one on the
/// configured channels (Operations/NotificationDispatcher.swift): the table is the outbox.
enum Notifier {
    /// One notification for one profile.
    static func notify(
        _ profileID: String, kind: NotificationKind, payload: [String: JSONValue], on connection: some SQLExecutor
    )
        throws
    {
        try notify([profileID], kind: kind, payload: payload, on: connection)
    }

    /// The same notification for several profiles, in one statement.
    static func notify(
        _ profileIDs: [String], kind: NotificationKind, payload: [String: JSONValue], on connection: some SQLExecutor
    ) throws {
        guard !profileIDs.isEmpty else { return }
        let body = String(decoding: JSONCoding.encode(payload), as: UTF8.self)
        let ids = "{" + profileIDs.joined(separator: ",") + "}"
        try connection.query(
            """
            INSERT INTO notifications (profile_id, kind, payload)
            SELECT profile, \(kind.rawValue), \(body)::jsonb FROM unnest(\(ids)::uuid[]) AS profile
            """)
    }

    /// The same notification for every admin.
    static func notifyAdmins(kind: NotificationKind, payload: [String: JSONValue], on connection: some SQLExecutor)
        throws
    {
        let body = String(decoding: JSONCoding.encode(payload), as: UTF8.self)
        try connection.query(
            """
            INSERT INTO notifications (profile_id, kind, payload)
            SELECT id, \(kind.rawValue), \(body)::jsonb FROM profiles WHERE roles = '{admin}'
            """)
    }
}
