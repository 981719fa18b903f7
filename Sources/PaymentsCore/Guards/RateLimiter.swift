import Postgres

/// A fixed-window limit: at most `limit` requests per `windowSeconds` for one key.
public struct RateLimit: Sendable, Equatable {
    /// Requests allowed per window.
    public let limit: Int
    /// Window length.
    public let windowSeconds: Int
}

/// Every limited route family, its key and its default limit — the one table of limits (docs/security.md).
/// `RATE_LIMITS` overrides counts and windows: `intent=20/60,capture=5/60`.
public enum RateLimitPolicy: String, Sendable, CaseIterable {
    case intent
    case intentIP = "intent-ip"
    case milestone, capture, cancel, dispute, connect
    case adminRefund = "admin-refund"
    case
        adminResolve = "admin-resolve"
    case adminEvidence = "admin-evidence"
    case adminReplay = "admin-replay"
    /// The admin's searches and lists (payments, inbox, audit log): per admin.
    case adminRead = "admin-read"
    case notifications
    /// The onboarding redirects (each hit calls Stripe): per profile named in a valid `state`,
    /// and per client address for states that do not verify. Checked by `ConnectResponder`.
    case onboarding
    case onboardingIP = "onboarding-ip"

    /// `{prefix}:{profile}` or `{prefix}:{ip}`.
    var keyPrefix: String {
        switch self {
        case .intent, .intentIP: return "intent"
        case .onboarding, .onboardingIP: return "onboarding"
        case .adminRefund: return "admin:refund"
        case .adminResolve: return "admin:resolve"
        case .adminEvidence: return "admin:evidence"
        case .adminReplay: return "admin:replay"
        case .adminRead: return "admin:read"
        default: return rawValue
        }
    }

    /// Whether the key names the client IP (checked before authentication) or the profile.
    var isKeyedByIP: Bool {
        switch self {
        case .intentIP, .capture, .adminRefund, .adminResolve, .adminEvidence, .adminReplay, .onboardingIP: return true
        default: return false
        }
    }

    var defaultLimit: RateLimit {
        switch self {
        case .intent, .milestone: return RateLimit(limit: 20, windowSeconds: 60)
        case .intentIP: return RateLimit(limit: 60, windowSeconds: 60)
        case .capture, .cancel, .dispute: return RateLimit(limit: 30, windowSeconds: 60)
        case .connect: return RateLimit(limit: 10, windowSeconds: 60)
        case .adminRefund, .adminResolve, .adminEvidence, .adminReplay: return RateLimit(limit: 30, windowSeconds: 60)
        case .adminRead: return RateLimit(limit: 120, windowSeconds: 60)
        case .notifications: return RateLimit(limit: 120, windowSeconds: 60)
        case .onboarding: return RateLimit(limit: 10, windowSeconds: 60)
        case .onboardingIP: return RateLimit(limit: 30, windowSeconds: 60)
        }
    }

    /// The key for a request: the profile id, or the client's address bucket (an IPv4 address,
    /// an IPv6 /64: `ClientAddress.rateLimitBucket`).
    func key(profileID: String?, remoteAddress: String) -> String {
        "\(keyPrefix):\(isKeyedByIP ? ClientAddress.rateLimitBucket(remoteAddress) : profileID ?? "anonymous")"
    }
}

/// Counts requests in PostgreSQL with one atomic upsert per check, so any number of processes
/// share the same counters and concurrent requests can never all slip through.
public struct RateLimiter: Sendable {
    let limits: [RateLimitPolicy: RateLimit]

    /// The default table, with `RATE_LIMITS` overrides applied.
    public init(environment: Environment) throws {
        var limits = Dictionary(uniqueKeysWithValues: RateLimitPolicy.allCases.map { ($0, $0.defaultLimit) })
        for entry in (environment.optional("RATE_LIMITS") ?? "").split(separator: ",") {
            let parts = entry.split(separator: "=")
            let numbers = parts.count == 2 ? parts[1].split(separator: "/").compactMap { Int($0) } : []
            guard parts.count == 2,
                let policy = RateLimitPolicy(rawValue: String(parts[0]).trimmingCharacters(in: .whitespaces)),
                numbers.count == 2, numbers[0] >= 1, (1...86_400).contains(numbers[1])
            else {
                throw ConfigurationError(
                    description:
                        "environment variable RATE_LIMITS has a malformed entry `\(entry)` (want name=count/seconds)")
            }
            limits[policy] = RateLimit(limit: numbers[0], windowSeconds: numbers[1])
        }
        self.limits = limits
    }

    /// Counts one request; throws `429 rate_limited` with `Retry-After` once the window is full.
    func check(_ policy: RateLimitPolicy, key: String, on connection: some SQLExecutor) throws {
        let rule = limits[policy] ?? policy.defaultLimit
        let count: SQLQuery = """
            INSERT INTO rate_limits AS r (key, window_start, count)
            VALUES (\(key), to_timestamp(floor(extract(epoch FROM now()) / \(rule.windowSeconds)) * \(rule.windowSeconds)), 1)
            ON CONFLICT (key, window_start) DO UPDATE SET count = r.count + 1
            RETURNING r.count,
                      ceil(extract(epoch FROM r.window_start + make_interval(secs => \(rule.windowSeconds)) - now()))::int AS retry_after
            """
        // Every guarded request counts at least once: planned once per connection.
        let row = try connection.query(count.prepared(as: "rate_limit_count")).first
        guard let row else { return }
        if try row.decode("count", as: Int.self) > rule.limit {
            let retryAfter = max(1, try row.decode("retry_after", as: Int.self))
            throw APIError(
                .rateLimited, message: "Too many requests; retry in \(retryAfter) s.",
                headers: [("Retry-After", String(retryAfter))])
        }
    }

    /// nginx's `REMOTE_ADDR` without a port (`1.2.3.4:5678`, `[::1]:5678`).
    static func clientIP(_ address: String) -> String {
        if address.hasPrefix("["), let end = address.firstIndex(of: "]") {
            return String(address[address.index(after: address.startIndex)..<end])
        }
        if address.filter({ $0 == ":" }).count == 1, let colon = address.firstIndex(of: ":") {
            return String(address[..<colon])
        }
        return address
    }
}
