import Foundation
import HTTPClient

/// How `payments sweep` delivers notifications (README, "Configuration"). Each channel is on
/// when it is configured and off otherwise; neither configured, the dispatcher does nothing.
struct NotificationSettings {
    /// Signed outbound webhooks to the marketplace application.
    struct Webhook {
        /// `MARKETPLACE_WEBHOOK_URL`: https, or http to a loopback address.
        let url: String
        /// `MARKETPLACE_WEBHOOK_SECRET` (or `_FILE`): the HMAC key of `Marketplace-Signature`.
        let secret: String
    }

    /// Email over SMTP.
    struct Mail {
        /// `SMTP_URL` (or `_FILE`, since it may carry a login): `smtp://` or `smtps://`.
        let url: String
        /// TLS is required except for a plain `smtp://` relay on loopback.
        let security: MailTransportSecurity
        /// The envelope sender (`SMTP_FROM`'s address).
        let sender: String
        /// The `From:` header (`SMTP_FROM` as given: `payments@example.com` or `Name <address>`).
        let fromHeader: String
    }

    let webhook: Webhook?
    let mail: Mail?
    /// `NOTIFY_RETRY_BASE_SECONDS` (default 30): the first retry's delay, doubled after each
    /// failure, at most `maximumBackoffSeconds`.
    let retryBaseSeconds: Int
    /// `NOTIFY_MAX_ATTEMPTS` (default 10): failed attempts before a delivery is dead.
    let maxAttempts: Int
    /// `NOTIFY_TIMEOUT_SECONDS` (default 10): one delivery's whole exchange; connecting gets at
    /// most 5 s of it.
    let timeout: Duration
    /// `NOTIFY_MAX_AGE_HOURS` (default 24): older notifications are not queued on a channel, so
    /// switching one on does not send out the history.
    let maxAgeHours: Int
    /// `NOTIFY_BATCH_SIZE` (default 200): deliveries per channel and run.
    let batchSize: Int

    /// The longest backoff between two attempts (one hour).
    static let maximumBackoffSeconds = 3600

    /// The channels that are on, in the order the dispatcher serves them.
    var channels: [NotificationChannel] {
        (webhook == nil ? [] : [.webhook]) + (mail == nil ? [] : [.email])
    }

    /// Reads and validates the settings; a half-configured channel is an error naming the
    /// variable (never its value).
    init(environment: Environment) throws {
        let url = environment.optional("MARKETPLACE_WEBHOOK_URL")
        let secret = environment.optional("MARKETPLACE_WEBHOOK_SECRET")
        switch (url, secret) {
        case (nil, nil):
            webhook = nil
        case (let url?, let secret?):
            guard Self.isAllowed(url, schemes: ["https", "http"], loopbackOnly: ["http"]) else {
                throw ConfigurationError(
                    description:
                        "environment variable MARKETPLACE_WEBHOOK_URL must be an https URL (http only to a loopback address)"
                )
            }
            guard secret.utf8.count >= 16 else {
                throw ConfigurationError(
                    description: "environment variable MARKETPLACE_WEBHOOK_SECRET must be at least 16 characters")
            }
            webhook = Webhook(url: url, secret: secret)
        case (nil, _):
            throw ConfigurationError(description: "missing required environment variable MARKETPLACE_WEBHOOK_URL")
        case (_, nil):
            throw ConfigurationError(description: "missing required environment variable MARKETPLACE_WEBHOOK_SECRET")
        }
        mail = try Self.mail(environment)
        retryBaseSeconds = try environment.integer("NOTIFY_RETRY_BASE_SECONDS", default: 30, in: 0...3600)
        maxAttempts = try environment.integer("NOTIFY_MAX_ATTEMPTS", default: 10, in: 1...50)
        timeout = .seconds(try environment.integer("NOTIFY_TIMEOUT_SECONDS", default: 10, in: 1...120))
        maxAgeHours = try environment.integer("NOTIFY_MAX_AGE_HOURS", default: 24, in: 1...720)
        batchSize = try environment.integer("NOTIFY_BATCH_SIZE", default: 200, in: 1...10_000)
    }

    private static func mail(_ environment: Environment) throws -> Mail? {
        let url = environment.optional("SMTP_URL")
        let from = environment.optional("SMTP_FROM")
        switch (url, from) {
        case (nil, nil):
            return nil
        case (let url?, let from?):
            guard Self.isAllowed(url, schemes: ["smtp", "smtps"]) else {
                throw ConfigurationError(
                    description: "environment variable SMTP_URL must be an smtp:// or smtps:// URL")
            }
            guard let sender = MailAddress.sender(of: from) else {
                throw ConfigurationError(
                    description: "environment variable SMTP_FROM must be an address or Name <address>")
            }
            let isPlainLoopback = url.lowercased().hasPrefix("smtp://") && Self.isLoopback(url)
            return Mail(url: url, security: isPlainLoopback ? .none : .required, sender: sender, fromHeader: from)
        case (nil, _):
            throw ConfigurationError(description: "missing required environment variable SMTP_URL")
        case (_, nil):
            throw ConfigurationError(description: "missing required environment variable SMTP_FROM")
        }
    }

    /// A URL with a host and one of `schemes`; those of `loopbackOnly` (clear text) only to a
    /// loopback host.
    private static func isAllowed(_ url: String, schemes: Set<String>, loopbackOnly: Set<String> = []) -> Bool {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            let host = components.host, !host.isEmpty, schemes.contains(scheme)
        else { return false }
        return !loopbackOnly.contains(scheme) || isLoopback(url)
    }

    private static func isLoopback(_ url: String) -> Bool {
        guard let host = URLComponents(string: url)?.host?.lowercased() else { return false }
        return host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }

    /// The delay before attempt `attempts + 1`, after `attempts` failures (1 or more).
    func backoffSeconds(afterAttempts attempts: Int) -> Int {
        let exponent = min(max(attempts - 1, 0), 20)
        return min(retryBaseSeconds * (1 << exponent), Self.maximumBackoffSeconds)
    }
}
