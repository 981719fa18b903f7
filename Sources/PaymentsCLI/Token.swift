import ArgumentParser
import PaymentsCore

/// `payments token --user SUB [--ttl SECONDS]`.
struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a development HS256 token signed with AUTH_JWT_SECRET.",
        discussion: "Refused with a live STRIPE_SECRET_KEY: production tokens come from the identity provider.")

    @Option(help: "The token's subject (profiles.user_id).")
    var user: String

    @Option(help: "Lifetime in seconds, at most AUTH_MAX_TOKEN_LIFETIME_SECONDS.")
    var ttl: Int = DevelopmentToken.defaultLifetime

    func validate() throws {
        guard !user.isEmpty else { throw ValidationError("--user must not be empty") }
        let longest = try DevelopmentToken.longestLifetime(environment: processEnvironment)
        guard (1...longest).contains(ttl) else {
            throw ValidationError(
                "--ttl must be a number of seconds from 1 to \(longest) (AUTH_MAX_TOKEN_LIFETIME_SECONDS)")
        }
    }

    func run() throws {
        try operate {
            let environment = try processEnvironment
            try LiveModeGuard.refuseLiveKey(for: "token", environment: environment)
            print(try DevelopmentToken.mint(user: user, lifetime: ttl, environment: environment))
            return true
        }
    }
}
