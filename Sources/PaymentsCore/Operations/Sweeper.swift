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

    /// What one task did in one run: the rows it touched and the items it could not settle
    /// now (or 1 when the whole task failed, `error`).
    public struct Outcome {
        /// The task's name (`expire_reservations`).
        public let task: String
        /// Rows the task changed or deleted.
        public let rows: Int
        /// Items that failed and stay due, or 1 for a task that failed as a whole.
        public let failures: Int
        /// Why the whole task failed, in plain words; nil when it ran.
        public let error: String?
    }

    /// `payments sweep`: connects with `DATABASE_URL` and the Stripe settings, runs every task
    /// once and records each run in `sweep_runs` (for /metrics); returns what each one did.
    public static func run(environment: Environment) throws -> [Outcome] {
        let connection = Connection(connectionString: try environment.required("DATABASE_URL"))
        StripeClient.initializeGlobalState()
        let payments = PaymentSweeper(
            connection: connection,
            stripe: try StripeClient(configuration: try ServerConfiguration.stripeConfiguration(environment)),
            marketplace: try MarketplaceConfiguration(environment: environment))
        // A notification setting that is wrong fails its own task, not the sweep's money tasks.
        let notifications = Result { try NotificationSettings(environment: environment) }
        let retention = Result { try WebhookPayloadRetention(environment: environment) }
        return try runOnce(on: connection, payments: payments, notifications: notifications, retention: retention)
    }

    /// Runs every task once, each on its own: one that fails as a whole is recorded and the
    /// others still run. Throws only when a run cannot be recorded (the database is gone).
    static func runOnce(
        on connection: some SQLExecutor, payments: PaymentSweeper,
        notifications: Result<NotificationSettings, any Error>,
        retention: Result<WebhookPayloadRetention, any Error>
    ) throws -> [Outcome] {
        let failures = payments.failures
        var steps: [(String, () throws -> Int)] = tasks.map { task in
            (task.name, { try connection.query(task.query).affectedRows })
        }
        steps += [
            ("expire_reservations", payments.expireReservations),
            ("warn_lapsing_holds", payments.warnLapsingHolds),
            ("settle_lapsing_authorizations", payments.settleLapsingAuthorizations),
            ("settle_unfinished_fundings", payments.settleUnfinishedFundings),
            ("expire_fundings", payments.expireFundings),
            (
                "recover_chargebacks",
                {
                    try ChargebackRecovery(
                        connection: connection, stripe: payments.stripe, marketplace: payments.marketplace
                    ).run()
                }
            ),
            ("record_charge_fees", { try ChargeFees(connection: connection, stripe: payments.stripe).run() }),
            (
                "retry_webhook_events",
                {
                    try retryEvents(
                        on: connection, stripe: payments.stripe,
                        payoutDelayDays: payments.marketplace.payoutDelayDays, failures: failures)
                }
            ),
            (
                "deliver_notifications",
                { try NotificationDispatcher(connection: connection, settings: try notifications.get()).run() }
            ),
            ("drop_old_webhook_payloads", { try retention.get().run(on: connection) }),
        ]
        return try steps.map { name, step in
            let started = ContinuousClock.now
            let before = failures.count
            var outcome: Outcome
            do {
                outcome = Outcome(task: name, rows: try step(), failures: failures.count - before, error: nil)
            } catch {
                failures.record(name, error)
                outcome = Outcome(
                    task: name, rows: 0, failures: failures.count - before, error: OperatorMessage.line(for: error))
            }
            try record(outcome, seconds: (ContinuousClock.now - started) / .seconds(1), on: connection)
            return outcome
        }
    }

    /// Adds one run to the task's row of `sweep_runs`; `last_success_at` moves only on a run
    /// without failures, so "sweeper not running" and "sweeper failing" both show at scrape time.
    static func record(_ outcome: Outcome, seconds: Double, on connection: some SQLExecutor) throws {
        let failed = outcome.failures
        try connection.query(
            """
            INSERT INTO sweep_runs AS s (task, runs, failures, rows_touched, last_started_at, last_finished_at,
                                         last_rows, last_failures, last_success_at)
            VALUES (\(outcome.task), 1, \(failed), \(outcome.rows), now() - make_interval(secs => \(seconds)), now(),
                    \(outcome.rows), \(failed), CASE WHEN \(failed) = 0 THEN now() END)
            ON CONFLICT (task) DO UPDATE SET
                runs = s.runs + 1, failures = s.failures + EXCLUDED.failures,
                rows_touched = s.rows_touched + EXCLUDED.rows_touched,
                last_started_at = EXCLUDED.last_started_at, last_finished_at = EXCLUDED.last_finished_at,
                last_rows = EXCLUDED.last_rows, last_failures = EXCLUDED.last_failures,
                last_success_at = coalesce(EXCLUDED.last_success_at, s.last_success_at)
            """)
    }

    /// Re-applies parked and failed events whose next attempt is due (100 per run). Each is
    /// re-applied in its own transaction under its row lock, and effects are idempotent, so
    /// sweepers running at the same time cannot apply an event twice.
    static func retryEvents(
        on connection: some SQLExecutor, stripe: StripeClient, payoutDelayDays: Int, failures: SweepFailures
    ) throws -> Int {
        let due = try connection.query(
            """
            SELECT id FROM webhook_events
            WHERE status IN ('parked', 'failed') AND next_attempt_at <= now()
            ORDER BY next_attempt_at LIMIT 100
            """
        ).rows.map { try $0.decode("id", as: String.self) }
        let inbox = WebhookInbox(
            connection: connection, audit: .system("payments sweep"), followUps: stripe,
            payoutDelayDays: payoutDelayDays)
        var applied = 0
        for id in due {
            // One event's failure is recorded on its row (and counted) and must not stop the others.
            if failures.attempt("retry_webhook_events \(id)", { try inbox.reprocess(eventID: id) }) == .processed {
                applied += 1
            }
        }
        return applied
    }
}
