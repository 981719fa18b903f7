import ArgumentParser
import PaymentsCore

/// `payments`: the service's one binary. Each operator task is a subcommand with its own
/// `--help` (which never runs it), typed options and the conventional exit codes: 0 done,
/// 1 failed, 64 misused (ArgumentParser's `ValidationError`).
public struct PaymentsCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "payments",
        abstract: "The marketplace payments service and its operator commands.",
        discussion: """
            Configuration comes from the environment (README.md, "Configuration"); \
            docs/operations.md describes every command. Exit status: 0 done, 1 failed, 64 misused. \
            Shell completion: payments --generate-completion-script bash|zsh|fish.
            """,
        version: PaymentsVersion.description,
        subcommands: [
            Serve.self, Migrate.self, Token.self, SeedDemo.self, Sweep.self, Events.self, Reconcile.self,
            StripeGroup.self, Doctor.self,
        ])

    public init() {}

    /// `payments` alone names no task: misuse.
    public func run() throws {
        throw ValidationError("name a command (payments --help lists them)")
    }
}
