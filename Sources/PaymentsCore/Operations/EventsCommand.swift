import Foundation
import Postgres
import Stripe

/// `payments events list --status S` and `payments events replay --id ID | --type T --since WHEN`.
enum EventsCommand {
    static let usage =
        "usage: payments events list [--status parked|failed|dead|processed|ignored] [--limit N]\n"
        + "       payments events replay (--id EVT | --type TYPE [--since UNIX_SECONDS])"

    static func run(_ arguments: [String], connection: Connection, stripe: StripeClient?) throws -> Int32 {
        var options: [String: String] = [:]
        var rest = arguments.dropFirst()[...]
        while let flag = rest.popFirst() {
            guard flag.hasPrefix("--"), let value = rest.popFirst() else {
                throw ConfigurationError(description: usage)
            }
            options[String(flag.dropFirst(2))] = value
        }
        switch arguments.first {
        case "list": return try list(options, connection: connection)
        case "replay": return try replay(options, connection: connection, stripe: stripe)
        default: throw ConfigurationError(description: usage)
        }
    }

    private static func list(_ options: [String: String], connection: Connection) throws -> Int32 {
        let limit = Int(options["limit"] ?? "100") ?? 100
        let rows = try connection.query(
            """
            SELECT id, endpoint, type, status, attempts, created, iso8601(received_at) AS received_at,
                   iso8601(next_attempt_at) AS next_attempt_at, last_error
            FROM webhook_events WHERE (\(options["status"])::text IS NULL OR status = \(options["status"]))
            ORDER BY received_at DESC LIMIT \(limit)
            """
        ).rows
        for row in rows {
            let fields = [
                "id", "endpoint", "type", "status", "attempts", "created", "received_at", "next_attempt_at",
                "last_error",
            ]
            print(try fields.map { try row.decodeIfPresent($0, as: String.self) ?? "-" }.joined(separator: "\t"))
        }
        return 0
    }

    private static func replay(_ options: [String: String], connection: Connection, stripe: StripeClient?) throws
        -> Int32
    {
        let ids: [String]
        if let id = options["id"] {
            ids = [id]
        } else if let type = options["type"] {
            let since = Int64(options["since"] ?? "0") ?? 0
            ids = try connection.query(
                """
                SELECT id FROM webhook_events WHERE type = \(type) AND created >= \(since) ORDER BY created, id
                """
            ).rows.map { try $0.decode("id", as: String.self) }
        } else {
            throw ConfigurationError(description: usage)
        }
        let inbox = WebhookInbox(connection: connection, audit: .system("payments events replay"), canceller: stripe)
        var failures = 0
        for id in ids {
            do {
                guard let outcome = try inbox.reprocess(eventID: id) else {
                    print("\(id)\tnot found")
                    failures += 1
                    continue
                }
                print("\(id)\t\(outcome.rawValue)")
            } catch {
                print("\(id)\tfailed")
                failures += 1
            }
        }
        return failures == 0 ? 0 : 1
    }
}
