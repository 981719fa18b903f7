import ArgumentParser
import PaymentsCore

/// `payments doctor`.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the configuration, database, migrations, Stripe, its clock, the endpoints and the sockets.",
        discussion: "Prints one line per check (ok, warning or problem); exits 1 when any check finds a problem.")

    func run() throws {
        try operate { PaymentsCore.Doctor.run(environment: try processEnvironment) }
    }
}
