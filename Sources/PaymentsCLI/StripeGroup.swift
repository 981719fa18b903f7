import ArgumentParser
import PaymentsCore

/// `payments stripe endpoints setup|check`.
struct StripeGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stripe", abstract: "Set up and check what the service needs at Stripe.",
        subcommands: [Endpoints.self])

    /// `payments stripe endpoints …`.
    struct Endpoints: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The platform and Connect webhook endpoints (PUBLIC_BASE_URL + the webhook routes).",
            subcommands: [Setup.self, Check.self])
    }

    /// `payments stripe endpoints setup`.
    struct Setup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the two webhook endpoints at Stripe, or update them to match.",
            discussion: """
                Each gets the URL of its route, the pinned API version, exactly the event types the \
                app handles, and connect=true for the Connect one. Signing secrets are printed once, \
                on creation. Exits 1 when an endpoint differs in what Stripe cannot change (its \
                api_version): delete it at Stripe and run setup again.
                """)

        func run() throws {
            try operate { try StripeEndpointsSetup.run(environment: processEnvironment) }
        }
    }

    /// `payments stripe endpoints check`.
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify both webhook endpoints at Stripe; exit 1 on any difference.",
            discussion: "Compares url, api_version, the event types, the connect flag and the status.")

        func run() throws {
            try operate { try StripeEndpointsCheck.run(environment: processEnvironment) }
        }
    }
}
