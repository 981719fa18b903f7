import Foundation
import Postgres
import Stripe

/// A missing or malformed environment variable; the message names it and nothing secret.
public struct ConfigurationError: Error, CustomStringConvertible {
    /// One line naming the variable and what is wrong with it.
    public let description: String
}

/// Reads typed values from an environment dictionary, naming the variable on failure.
public struct Environment: Sendable {
    let values: [String: String]

    /// Wraps a dictionary as it is (tests; the process uses `init(resolvingSecretFiles:)`).
    public init(_ values: [String: String]) {
        self.values = values
    }

    /// The variables that hold secrets. Each may instead be given as `NAME_FILE`, the path of a
    /// file whose contents (surrounding whitespace trimmed) are the value, so that secrets live
    /// in root-readable files (systemd's `LoadCredential=`, a mounted secret) rather than in the
    /// environment a process listing or a crash report can show.
    public static let secretNames = [
        "DATABASE_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRETS", "STRIPE_CONNECT_WEBHOOK_SECRETS",
        "AUTH_JWT_SECRET", "MARKETPLACE_WEBHOOK_SECRET", "SMTP_URL",
    ]

    /// Wraps a dictionary after reading every `NAME_FILE` of `secretNames` into `NAME`. Setting
    /// both, an unreadable file and an empty one are configuration errors naming the variable
    /// (never the contents).
    public init(resolvingSecretFiles values: [String: String]) throws {
        var resolved = values
        for name in Self.secretNames {
            guard let path = values[name + "_FILE"], !path.isEmpty else { continue }
            if let direct = values[name], !direct.isEmpty {
                throw ConfigurationError(
                    description: "environment variables \(name) and \(name)_FILE are both set; use one")
            }
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
            else {
                throw ConfigurationError(
                    description: "environment variable \(name)_FILE names a file that cannot be read")
            }
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !value.isEmpty else {
                throw ConfigurationError(description: "environment variable \(name)_FILE names an empty file")
            }
            resolved[name] = value
        }
        self.values = resolved
    }

    /// A required, non-empty string.
    public func required(_ name: String) throws -> String {
        guard let value = values[name], !value.isEmpty else {
            throw ConfigurationError(description: "missing required environment variable \(name)")
        }
        return value
    }

    /// An optional string; empty counts as absent.
    public func optional(_ name: String) -> String? {
        guard let value = values[name], !value.isEmpty else { return nil }
        return value
    }

    /// An integer within `range`, or `defaultValue` when unset.
    public func integer(_ name: String, default defaultValue: Int, in range: ClosedRange<Int>) throws -> Int {
        guard let text = optional(name) else { return defaultValue }
        guard let value = Int(text), range.contains(value) else {
            throw ConfigurationError(
                description:
                    "environment variable \(name) must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// A flag: `1`/`true`/`yes` or `0`/`false`/`no`.
    public func flag(_ name: String, default defaultValue: Bool) throws -> Bool {
        guard let text = optional(name)?.lowercased() else { return defaultValue }
        switch text {
        case "1", "true", "yes": return true
        case "0", "false", "no": return false
        default: throw ConfigurationError(description: "environment variable \(name) must be 1 or 0")
        }
    }
}

/// Everything the server needs to start, read once from the environment (the README lists every variable).
public struct ServerConfiguration: Sendable {
    /// libpq connection string or URI.
    public var databaseURL: String
    /// Unix socket path or `127.0.0.1:PORT`.
    public var socketAddress: String
    /// Permission bits for a unix socket (`FCGI_SOCKET_MODE`, octal, default 0660).
    public var socketMode: UInt32
    /// Group of the unix sockets (`FCGI_SOCKET_GROUP`, a group name or number; default: the process's group).
    public var socketGroup: UInt32?
    /// The Stripe lane's socket (`FCGI_STRIPE_SOCKET`; default beside `FCGI_SOCKET`).
    public var stripeSocketAddress: String
    /// Core-lane worker threads: webhooks, reads, ops (`WORKERS`, default 8).
    public var workers: Int
    /// Stripe-lane worker threads: routes that call Stripe (`STRIPE_WORKERS`, default 64).
    public var stripeWorkers: Int
    /// Longest wait of an accepted request for a free worker of its lane (`LANE_QUEUE_TIMEOUT_MS`, default 1000).
    public var laneQueueTimeout: Duration
    /// The process's PostgreSQL pool (`DATABASE_POOL_SIZE`, default 16; `DATABASE_POOL_TIMEOUT_MS`, default 2000).
    public var pool: PoolConfiguration
    /// This process's name in `/metrics` and logs (`INSTANCE_NAME`, default `HOST/SOCKET-FILE`).
    public var instanceName: String
    /// Largest request body the app reads (`MAX_BODY_BYTES`, default 1 MiB).
    public var maximumBodyBytes: Int
    /// Time allowed for in-flight requests after SIGTERM (`SHUTDOWN_TIMEOUT_SECONDS`, default
    /// `STRIPE_DEADLINE_SECONDS` + 10, and never at or below it: a request waiting on Stripe must
    /// be able to reach its own deadline and answer before the process exits).
    public var shutdownTimeoutSeconds: Int
    /// Where log lines go (`LOG_FILE`, reopened on SIGHUP); nil: standard output and error.
    public var logFile: String?
    /// Folder of numbered migration files (`MIGRATIONS_DIR`, default `sql`).
    public var migrationsDirectory: String
    /// Enables the test-only `/api/_diag/…` routes (`DIAGNOSTICS_ENABLED`, default off).
    public var diagnosticsEnabled: Bool
    /// Token verification settings.
    public var auth: AuthConfiguration
    /// Rate-limit table with `RATE_LIMITS` overrides.
    public var rateLimiter: RateLimiter
    /// How to reach Stripe (`STRIPE_SECRET_KEY`, `STRIPE_API_BASE`, `STRIPE_CA_BUNDLE`).
    public var stripe: StripeConfiguration
    /// What the browser pages need to confirm a card (`STRIPE_PUBLISHABLE_KEY`; `GET /api/config`).
    public var browserStripe: BrowserStripeConfiguration
    /// Fees, reservation and capture windows.
    public var marketplace: MarketplaceConfiguration
    /// External https URL of this service (`PUBLIC_BASE_URL`), for onboarding links.
    public var publicBaseURL: String
    /// Where sellers land after onboarding (`APP_RETURN_URL`).
    public var appReturnURL: String
    /// The HMAC key of onboarding `state` values (derived from the Stripe secret key).
    var onboardingStateKey: [UInt8]
    /// Seals the responses the idempotency store keeps (they hold client secrets and links).
    var storedResponseKey: [UInt8]
    /// Signature checks for `/api/payments/webhook` (`STRIPE_WEBHOOK_SECRETS`).
    public var platformWebhooks: WebhookSignatureVerifier
    /// Signature checks for `/api/payments/webhook/connect` (`STRIPE_CONNECT_WEBHOOK_SECRETS`).
    public var connectWebhooks: WebhookSignatureVerifier

    /// Reads and validates the configuration.
    public init(environment: Environment) throws {
        databaseURL = try environment.required("DATABASE_URL")
        socketAddress = try environment.required("FCGI_SOCKET")
        let modeText = environment.optional("FCGI_SOCKET_MODE") ?? "0660"
        guard let mode = UInt32(modeText, radix: 8), mode <= 0o777 else {
            throw ConfigurationError(
                description: "environment variable FCGI_SOCKET_MODE must be octal permission bits such as 0660")
        }
        socketMode = mode
        socketGroup = try environment.optional("FCGI_SOCKET_GROUP").map(Self.groupID)
        stripeSocketAddress = environment.optional("FCGI_STRIPE_SOCKET") ?? Self.stripeSocket(beside: socketAddress)
        guard stripeSocketAddress != socketAddress else {
            throw ConfigurationError(
                description: "environment variable FCGI_STRIPE_SOCKET must differ from FCGI_SOCKET")
        }
        workers = try environment.integer("WORKERS", default: 8, in: 1...512)
        stripeWorkers = try environment.integer("STRIPE_WORKERS", default: 64, in: 1...1024)
        laneQueueTimeout = .milliseconds(
            try environment.integer("LANE_QUEUE_TIMEOUT_MS", default: 1000, in: 1...60_000))
        pool = PoolConfiguration(
            connectionString: databaseURL,
            size: try environment.integer("DATABASE_POOL_SIZE", default: 16, in: 1...1000),
            acquireTimeout: .milliseconds(
                try environment.integer("DATABASE_POOL_TIMEOUT_MS", default: 2000, in: 1...60_000)))
        instanceName =
            environment.optional("INSTANCE_NAME")
            ?? "\(ProcessInfo.processInfo.hostName)/\(socketAddress.split(separator: "/").last.map(String.init) ?? socketAddress)"
        maximumBodyBytes = try environment.integer("MAX_BODY_BYTES", default: 1 << 20, in: 1024...(64 << 20))
        migrationsDirectory = environment.optional("MIGRATIONS_DIR") ?? "sql"
        logFile = environment.optional("LOG_FILE")
        diagnosticsEnabled = try environment.flag("DIAGNOSTICS_ENABLED", default: false)
        auth = try AuthConfiguration(environment: environment)
        rateLimiter = try RateLimiter(environment: environment)
        stripe = try Self.stripeConfiguration(environment)
        let stripeDeadline = Int(stripe.requestDeadline.components.seconds)
        shutdownTimeoutSeconds = try environment.integer(
            "SHUTDOWN_TIMEOUT_SECONDS", default: stripeDeadline + 10, in: 1...900)
        guard shutdownTimeoutSeconds > stripeDeadline else {
            throw ConfigurationError(
                description: "environment variable SHUTDOWN_TIMEOUT_SECONDS must be above STRIPE_DEADLINE_SECONDS "
                    + "(\(stripeDeadline)): a request waiting on Stripe needs that long to answer")
        }
        // `/api/_diag/stripe` is an unauthenticated proxy holding the platform key: never with a live one.
        if diagnosticsEnabled && stripe.isLiveMode {
            throw ConfigurationError(
                description: "environment variable DIAGNOSTICS_ENABLED must be 0 when "
                    + "STRIPE_SECRET_KEY is a live key (sk_live_…, rk_live_…): its routes are for tests only")
        }
        browserStripe = try BrowserStripeConfiguration(environment: environment, stripe: stripe)
        marketplace = try MarketplaceConfiguration(environment: environment)
        publicBaseURL = try Self.httpURL("PUBLIC_BASE_URL", environment)
        appReturnURL = try Self.httpURL("APP_RETURN_URL", environment)
        onboardingStateKey = OnboardingState.key(stripeSecretKey: stripe.secretKey)
        storedResponseKey = IdempotencyStore.sealingKey(stripeSecretKey: stripe.secretKey)
        let tolerance = try environment.integer("WEBHOOK_TOLERANCE_SECONDS", default: 300, in: 1...86_400)
        platformWebhooks = WebhookSignatureVerifier(
            secrets: try Self.webhookSecrets("STRIPE_WEBHOOK_SECRETS", environment),
            tolerance: Int64(tolerance))
        connectWebhooks = WebhookSignatureVerifier(
            secrets: try Self.webhookSecrets("STRIPE_CONNECT_WEBHOOK_SECRETS", environment), tolerance: Int64(tolerance)
        )
    }

    /// A group name (looked up once, at start-up) or number.
    static func groupID(_ name: String) throws -> UInt32 {
        if let number = UInt32(name) { return number }
        guard let entry = getgrnam(name) else {
            throw ConfigurationError(description: "environment variable FCGI_SOCKET_GROUP names no group: \(name)")
        }
        return entry.pointee.gr_gid
    }

    /// The default Stripe-lane address: `app.sock` → `app-stripe.sock`; `HOST:PORT` → `HOST:PORT+1`.
    static func stripeSocket(beside address: String) -> String {
        if !address.hasPrefix("/"), let colon = address.lastIndex(of: ":"),
            let port = Int(address[address.index(after: colon)...])
        {
            return "\(address[..<colon]):\(port + 1)"
        }
        return address.hasSuffix(".sock") ? String(address.dropLast(5)) + "-stripe.sock" : address + "-stripe"
    }

    /// How long one request may be in progress: the Stripe deadline plus one statement
    /// timeout for the database work after it. An `Idempotency-Key` or a create attempt still
    /// marked in progress after this cannot belong to a running request.
    public var requestLease: Duration { stripe.requestDeadline + pool.statementTimeout }

    /// A required absolute http(s) URL without a trailing slash.
    static func httpURL(_ name: String, _ environment: Environment) throws -> String {
        let value = try environment.required(name)
        guard let url = URL(string: value), ["https", "http"].contains(url.scheme ?? ""), url.host != nil else {
            throw ConfigurationError(description: "environment variable \(name) must be an absolute https URL")
        }
        return value.hasSuffix("/") && name == "PUBLIC_BASE_URL" ? String(value.dropLast()) : value
    }

    /// A comma-separated list of `whsec_…` secrets (several during a rotation).
    static func webhookSecrets(_ name: String, _ environment: Environment) throws -> [String] {
        let secrets = try environment.required(name).split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard !secrets.isEmpty, secrets.allSatisfy({ $0.hasPrefix("whsec_") && $0.count > 10 }) else {
            throw ConfigurationError(
                description: "environment variable \(name) must be comma-separated whsec_… secrets")
        }
        return secrets
    }

    /// `STRIPE_SECRET_KEY` must look like a secret key; `STRIPE_API_BASE` must be http(s).
    static func stripeConfiguration(_ environment: Environment) throws -> StripeConfiguration {
        let key = try environment.required("STRIPE_SECRET_KEY")
        guard
            key.hasPrefix("sk_test_") || key.hasPrefix("sk_live_") || key.hasPrefix("rk_test_")
                || key.hasPrefix("rk_live_")
        else {
            throw ConfigurationError(
                description: "environment variable STRIPE_SECRET_KEY must be a secret key (sk_test_… or sk_live_…)")
        }
        let base = environment.optional("STRIPE_API_BASE") ?? "https://api.stripe.com"
        guard base.hasPrefix("https://") || base.hasPrefix("http://127.0.0.1") || base.hasPrefix("http://localhost")
        else {
            throw ConfigurationError(description: "environment variable STRIPE_API_BASE must be an https URL")
        }
        let timeout = try environment.integer("STRIPE_TIMEOUT_SECONDS", default: 10, in: 1...120)
        let deadline = try environment.integer("STRIPE_DEADLINE_SECONDS", default: 20, in: 1...300)
        var configuration = StripeConfiguration(
            secretKey: key, apiBase: base,
            maximumRetries: try environment.integer("STRIPE_MAX_RETRIES", default: 2, in: 0...10),
            requestDeadline: .seconds(deadline), userAgent: PaymentsVersion.stripeUserAgent)
        configuration.http.totalTimeout = .seconds(timeout)
        configuration.http.caBundlePath = environment.optional("STRIPE_CA_BUNDLE")
        return configuration
    }
}

/// What happens to an authorisation that nobody captured when its hold is about to lapse.
public enum HoldExpiryAction: String, Sendable {
    /// Cancel it: the buyer's card is released and the sale does not happen (the default).
    case cancel
    /// Capture it in full, unless a dispute is open (then admins are alerted and it waits).
    case capture
}

/// Who pays for a chargeback on a destination charge, where the platform is the merchant of record.
public enum ChargebackLiability: String, Sendable {
    /// The platform absorbs it (the default).
    case platform
    /// The seller: the disputed amount is taken back from the seller's transfer when Stripe
    /// withdraws it, and given back if the chargeback is won.
    case seller
}

/// The marketplace's money rules.
public struct MarketplaceConfiguration: Sendable {
    /// Platform fee in basis points (`PLATFORM_FEE_BPS`, default 1000 = 10 %).
    public var feeBasisPoints: Int
    /// How long a listing is held while the buyer pays (`RESERVATION_MINUTES`, default 10).
    public var reservationMinutes: Int
    /// Seller payout delay set on Connect accounts (`PAYOUT_DELAY_DAYS`, default 7).
    public var payoutDelayDays: Int
    /// Authorisations this close to `capture_before` get the hold-expiry action from the
    /// sweeper (`CAPTURE_MARGIN_HOURS`, default 12).
    public var captureMarginHours: Int
    /// What the sweeper does with an authorisation nobody captured before the margin
    /// (`HOLD_EXPIRY_ACTION`, default `cancel`).
    public var holdExpiryAction: HoldExpiryAction
    /// Buyer and seller are told this long before the hold-expiry action (`HOLD_WARNING_HOURS`,
    /// default 24; 0 sends no warning).
    public var holdWarningHours: Int
    /// Who pays for a chargeback on a destination charge (`CHARGEBACK_LIABILITY`, default
    /// `platform`).
    public var chargebackLiability: ChargebackLiability
    /// Stripe's chargeback fee, recovered from the seller with the disputed amount under
    /// `seller` liability (`CHARGEBACK_FEE_RECOVERY_CENTS`, default 0: not recovered).
    public var chargebackFeeRecoveryCents: Int
    /// How new purchases are charged (`CHARGE_MODEL`, default `destination`); recorded on each
    /// payment, so a change applies to purchases made after it only.
    public var chargeModel: ChargeModel
    /// Under `destination`, make the seller the settlement merchant (`on_behalf_of` = the
    /// seller's account; `DESTINATION_ON_BEHALF_OF`, default off).
    public var destinationOnBehalfOf: Bool
    /// Whether a direct charge's refund gives the platform's application fee back, in proportion
    /// (`refund_application_fee`; `DIRECT_REFUND_APPLICATION_FEE`, default on). Recorded on each
    /// refund when it is reserved, so a resumed refund keeps the choice it was made under.
    public var directRefundApplicationFee: Bool

    /// Reads and validates the settings.
    public init(environment: Environment) throws {
        feeBasisPoints = try environment.integer("PLATFORM_FEE_BPS", default: 1000, in: 0...10_000)
        reservationMinutes = try environment.integer("RESERVATION_MINUTES", default: 10, in: 1...1440)
        payoutDelayDays = try environment.integer("PAYOUT_DELAY_DAYS", default: 7, in: 2...365)
        captureMarginHours = try environment.integer("CAPTURE_MARGIN_HOURS", default: 12, in: 0...144)
        let action = environment.optional("HOLD_EXPIRY_ACTION") ?? HoldExpiryAction.cancel.rawValue
        guard let holdExpiryAction = HoldExpiryAction(rawValue: action) else {
            throw ConfigurationError(description: "environment variable HOLD_EXPIRY_ACTION must be cancel or capture")
        }
        self.holdExpiryAction = holdExpiryAction
        holdWarningHours = try environment.integer("HOLD_WARNING_HOURS", default: 24, in: 0...144)
        let liability = environment.optional("CHARGEBACK_LIABILITY") ?? ChargebackLiability.platform.rawValue
        guard let chargebackLiability = ChargebackLiability(rawValue: liability) else {
            throw ConfigurationError(
                description: "environment variable CHARGEBACK_LIABILITY must be platform or seller")
        }
        self.chargebackLiability = chargebackLiability
        chargebackFeeRecoveryCents = try environment.integer(
            "CHARGEBACK_FEE_RECOVERY_CENTS", default: 0, in: 0...100_000)
        let model = environment.optional("CHARGE_MODEL") ?? ChargeModel.destination.rawValue
        guard let chargeModel = ChargeModel(rawValue: model) else {
            throw ConfigurationError(description: "environment variable CHARGE_MODEL must be destination or direct")
        }
        self.chargeModel = chargeModel
        destinationOnBehalfOf = try environment.flag("DESTINATION_ON_BEHALF_OF", default: false)
        if destinationOnBehalfOf && chargeModel != .destination {
            throw ConfigurationError(
                description: "environment variable DESTINATION_ON_BEHALF_OF applies to CHARGE_MODEL=destination only; "
                    + "a direct charge is already made on the seller's account")
        }
        directRefundApplicationFee = try environment.flag("DIRECT_REFUND_APPLICATION_FEE", default: true)
    }

    /// The largest amount Stripe charges (eight digits of minor units).
    static let maximumChargeAmount: Int64 = 99_999_999

    /// `409 amount_too_large` for a price Stripe cannot charge (checked before anything is reserved).
    static func checkChargeable(_ amount: Int64) throws {
        guard (1...maximumChargeAmount).contains(amount) else {
            throw APIError(
                .amountTooLarge,
                message: "The price must be from 1 to \(maximumChargeAmount) minor units to be charged through Stripe.")
        }
    }

    /// The platform fee for `amount` minor units: `amount × bps / 10 000`, rounded half up to
    /// a whole minor unit (integer arithmetic only; 1 050 × 1 000 bps → 105; 1 005 → 101).
    /// Computed as whole ten-thousands plus the remainder, so no amount can overflow; a negative
    /// amount has no fee.
    public func fee(for amount: Int64) -> Int64 {
        guard amount > 0 else { return 0 }
        let basisPoints = Int64(feeBasisPoints)
        let (wholes, remainder) = amount.quotientAndRemainder(dividingBy: 10_000)
        return wholes * basisPoints + (remainder * basisPoints + 5_000) / 10_000
    }
}

extension StripeConfiguration {
    /// Whether the secret key moves real money (`sk_live_…`, or a restricted `rk_live_…` key).
    var isLiveMode: Bool { secretKey.hasPrefix("sk_live_") || secretKey.hasPrefix("rk_live_") }
}
