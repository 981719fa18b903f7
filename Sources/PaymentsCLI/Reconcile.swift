import ArgumentParser
import Foundation
import PaymentsCore

/// `payments reconcile [--since T] [--until T] [--format text|json] [--apply]`.
struct Reconcile: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare our books with Stripe's and report every drift.",
        discussion: """
            Walks Stripe's payment intents, refunds, transfers, disputes, Express accounts and the
            connected accounts' payouts created in the window, and compares them with our rows. \
            Changes nothing unless --apply is given; then it applies only transitions Stripe already \
            made (a payment's status, its refund totals), through the same guarded functions as the \
            webhooks, each audited. Exit status: 0 no drift (or all repaired), 1 drift, 2 error.
            """)

    @Option(help: "Objects created at or after this Unix time (default: 7 days ago).")
    var since: Int64?

    @Option(help: "…and at or before this Unix time (default: now).")
    var until: Int64?

    @Option(help: "text (one line per drift and a summary) or json.")
    var format: String = "text"

    @Flag(help: "Repair what is safe to repair.")
    var apply = false

    func validate() throws {
        guard Reconciliation.Format(rawValue: format) != nil else {
            throw ValidationError("--format must be text or json")
        }
        if let since, since < 0 { throw ValidationError("--since must be a Unix time (seconds, ≥ 0)") }
        if let since, let until, until < since { throw ValidationError("--until must not be before --since") }
    }

    func run() throws {
        let now = Int64(Date().timeIntervalSince1970)
        let clean: Bool
        do {
            clean = try Reconciliation.run(
                since: since ?? now - 7 * 86_400, until: until ?? now,
                format: Reconciliation.Format(rawValue: format) ?? .text, apply: apply, environment: processEnvironment)
        } catch {
            printError("payments: \(OperatorMessage.line(for: error))")
            throw ExitCode(2)
        }
        if !clean { throw ExitCode.failure }
    }
}
