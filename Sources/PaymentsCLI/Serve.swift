import ArgumentParser
import PaymentsCore

/// `payments serve`.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the FastCGI server: both lanes, until SIGTERM or SIGINT.",
        discussion: """
            Reads DATABASE_URL, FCGI_SOCKET, WORKERS, STRIPE_*, … (README.md, "Configuration"). \
            Exits 0 when every in-flight request finished within SHUTDOWN_TIMEOUT_SECONDS, 1 otherwise \
            or when the configuration is refused.
            """)

    func run() throws {
        try operate { try ServeCommand.run(environment: processEnvironment) }
    }
}
