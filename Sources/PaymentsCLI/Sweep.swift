import ArgumentParser
import PaymentsCore

/// `payments sweep`.
struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the housekeeping tasks once (safe from cron every minute, and concurrently).",
        discussion: """
            Purges idempotency keys after 24 h and old rate-limit windows, cancels expired \
            reservations, unpaid milestone fundings and lapsing authorisations at Stripe, retries \
            parked and failed webhook events, and delivers notifications by signed webhook and email \
            when MARKETPLACE_WEBHOOK_URL or SMTP_URL is set, and drops the raw bytes of processed \
            webhook events older than WEBHOOK_PAYLOAD_RETENTION_DAYS (90). Prints each task's rows.
            """)

    func run() throws {
        try operate {
            let outcomes = try Sweeper.run(environment: processEnvironment)
            for outcome in outcomes {
                print("sweep: \(outcome.task): \(outcome.rows)")
                if let error = outcome.error {
                    printError("payments: sweep: \(outcome.task) failed: \(error)")
                } else if outcome.failures > 0 {
                    printError("payments: sweep: \(outcome.task): \(outcome.failures) item(s) failed and stay due")
                }
            }
            // Items that stay due are retried next run; a task that failed as a whole is exit 1.
            return outcomes.allSatisfy { $0.error == nil }
        }
    }
}
