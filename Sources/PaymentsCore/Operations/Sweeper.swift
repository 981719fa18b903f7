import Postgres
import Stripe

/// Periodic housekeeping (`payments sweep`). Each task is one idempotent statement, safe to run
/// from several hosts at once; later families add theirs (expired reservations, parked events).
public struct Sweeper {
    /// A named task and the statement that performs it.
    struct Task {
        let name: String
        let query: SQLQuery
    }

    static let tasks: [Task] = [
        Task(
            name: "purge_idempotency_keys",
            query: "DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'"),
        Task(
            name: "purge_rate_limit_windows",
            query: "DELETE FROM rate_limits WHERE window_start < now() - interval '1 day'"),
        Task(
            name: "purge_onboarding_state_nonces",
            query: "DELETE FROM onboarding_state_nonces WHERE expires_at < now() - interval '1 hour'"),
    ]

    /// `payments sweep`: connects with `DATABASE_URL` and the Stripe settings, runs every task
    /// once; returns the rows each one touched.
    public static func run(environment: Environment) throws -> [(String, Int)] {
        let connection = Connection(connectionString: try environment.required("DATABASE_URL"))
        StripeClient.initializeGlobalState()
        let payments = PaymentSweeper(
            connection: connection,
            stripe: try StripeClient(configuration: try ServerConfiguration.stripeConfiguration(environment)),
            marketplace: try MarketplaceConfiguration(environment: environment))
        return try runOnce(on: connection, payments: payments)
    }

    /// Runs every task once; returns the rows each one touched.
    static func runOnce(on connection: some SQLExecutor, payments: PaymentSweeper) throws -> [(String, Int)] {
        var results = try tasks.map { task in (task.name, try connection.query(task.query).affectedRows) }
        results.append(("expire_reservations", try payments.expireReservations()))
        results.append(("warn_lapsing_holds", try payments.warnLapsingHolds()))
        results.append(("settle_lapsing_authorizations", try payments.settleLapsingAuthorizations()))
        results.append(("settle_unfinished_fundings", try payments.settleUnfinishedFundings()))
        results.append(("expire_fundings", try payments.expireFundings()))
        results.append(
            (
                "recover_chargebacks",
                try ChargebackRecovery(
                    connection: connection, stripe: payments.stripe, marketplace: payments.marketplace
                )
                .run()
            ))
        results.append(("record_charge_fees", try ChargeFees(connection: connection, stripe: payments.stripe).run()))
        results.append(("retry_webhook_events", try retryEvents(on: connection, stripe: payments.stripe)))
        return results
    }

    /// Re-applies parked and failed events whose next attempt is due (100 per run). Each is
    /// re-applied in its own transaction under its row lock, and effects are idempotent, so
    /// sweepers running at the same time cannot apply an event twice.
    static func retryEvents(on connection: some SQLExecutor, stripe: StripeClient) throws -> Int {
        let due = try connection.query(
            """
            SELECT id FROM webhook_events
            WHERE status IN ('parked', 'failed') AND next_attempt_at <= now()
            ORDER BY next_attempt_at LIMIT 100
            """
        ).rows.map { try $0.decode("id", as: String.self) }
        let inbox = WebhookInbox(connection: connection, audit: .system("payments sweep"), canceller: stripe)
        var applied = 0
        for id in due {
            // One event's failure is recorded on its row and must not stop the others.
            if (try? inbox.reprocess(eventID: id)) == .processed { applied += 1 }
        }
        return applied
    }
}
