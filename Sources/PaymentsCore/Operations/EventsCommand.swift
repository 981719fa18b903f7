import Foundation
import Postgres
import Stripe

/// `payments events list` and `payments events replay`: the webhook inbox from the command line.
public enum EventsCommand {
    /// The `webhook_events.status` values `list --status` accepts.
    public static let statuses = ["received", "processed", "parked", "failed", "ignored", "dead"]

    /// Which stored events `replay` re-applies.
    public enum Selection: Sendable, Equatable {
        /// One event by its id.
        case id(String)
        /// Every stored event of a type created at or after a Unix time.
        case type(String, since: Int64)
    }

    /// Prints the newest `limit` events (with `status`, only those), one tab-separated line each.
    public static func list(status: String?, limit: Int, environment: Environment) throws {
        let connection = Connection(connectionString: try environment.required("DATABASE_URL"))
        try list(status: status, limit: limit, connection: connection)
    }

    /// Re-applies the selected events idempotently; false when one was missing or failed.
    public static func replay(_ selection: Selection, environment: Environment) throws -> Bool {
        let connection = Connection(connectionString: try environment.required("DATABASE_URL"))
        // Replays may need to cancel abandoned authorisations; without Stripe settings they only record.
        StripeClient.initializeGlobalState()
        let stripe = (try? ServerConfiguration.stripeConfiguration(environment)).flatMap {
            try? StripeClient(configuration: $0)
        }
        // An account.updated replayed is checked against the payout delay like a live delivery.
        let payoutDelayDays = (try? MarketplaceConfiguration(environment: environment))?.payoutDelayDays
        return try replay(selection, connection: connection, stripe: stripe, payoutDelayDays: payoutDelayDays)
    }

    private static func list(status: String?, limit: Int, connection: Connection) throws {
        let rows = try connection.query(
            """
            SELECT id, endpoint, type, status, attempts, created, iso8601(received_at) AS received_at,
                   iso8601(next_attempt_at) AS next_attempt_at, last_error
            FROM webhook_events WHERE (\(status)::text IS NULL OR status = \(status))
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
    }

    private static func replay(
        _ selection: Selection, connection: Connection, stripe: StripeClient?, payoutDelayDays: Int?
    ) throws -> Bool {
        let ids: [String]
        switch selection {
        case .id(let id):
            ids = [id]
        case .type(let type, let since):
            ids = try connection.query(
                """
                SELECT id FROM webhook_events WHERE type = \(type) AND created >= \(since) ORDER BY created, id
                """
            ).rows.map { try $0.decode("id", as: String.self) }
        }
        let inbox = WebhookInbox(
            connection: connection, audit: .system("payments events replay"), followUps: stripe,
            payoutDelayDays: payoutDelayDays)
        var failures = 0
        for id in ids {
            do {
                guard let outcome = try inbox.reprocess(eventID: id) else {
                    print("\(id)\tnot found")
                    failures += 1
                    continue
                }
                print("\(id)\t\(outcome.rawValue)")
            } catch is WebhookPayloadExpired {
                print("\(id)\tpayload dropped (WEBHOOK_PAYLOAD_RETENTION_DAYS)")
                failures += 1
            } catch {
                print("\(id)\tfailed")
                failures += 1
            }
        }
        return failures == 0
    }
}
