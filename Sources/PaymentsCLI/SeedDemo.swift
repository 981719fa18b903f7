import ArgumentParser
import PaymentsCore

/// `payments seed-demo`.
struct SeedDemo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed-demo",
        abstract: "Create the demo buyer, seller, admin, listings and milestones (idempotent).",
        discussion: "Refused with a live STRIPE_SECRET_KEY.")

    func run() throws {
        try operate {
            print("seed-demo: \(try DemoData.seed(environment: processEnvironment)) rows created")
            return true
        }
    }
}
