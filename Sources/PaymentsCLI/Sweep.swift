import ArgumentParser
import PaymentsCore

/// `payments sweep`.
struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the housekeeping tasks once (safe from cron every minute, and concurrently).",
        discussion: """
            Purges idempotency keys after 24 h and old rate-limit windows, cancels expired \
            reservations, unpaid milestone fundings and lapsing authorisations at Stripe, and retries \
            parked and failed webhook events. Prints each task's rows.
            """)

    func run() throws {
        try operate {
            for (task, rows) in try Sweeper.run(environment: processEnvironment) {
                print("sweep: \(task): \(rows)")
            }
            return true
        }
    }
}
