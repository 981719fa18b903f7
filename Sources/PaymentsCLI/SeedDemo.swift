import ArgumentParser
import PaymentsCore

/// `payments seed-demo`.
struct SeedDemo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed-demo",
        abstract: "Create the demo buyer, seller, admin, listings and milestones (idempotent).",
        discussion: """
            Refused with a live STRIPE_SECRET_KEY. With --fresh-listings it also creates new listings \
            of the demo seller for one run of the demo story and prints their ids as JSON.
            """)

    @Flag(help: "Create fresh listings for one run of `make demo` and print them as JSON.")
    var freshListings = false

    func run() throws {
        try operate {
            if freshListings {
                print(try DemoData.freshListings(environment: processEnvironment))
            } else {
                print("seed-demo: \(try DemoData.seed(environment: processEnvironment)) rows created")
            }
            return true
        }
    }
}
