/// How a route treats the request body.
public enum BodyKind: Sendable {
    /// No body expected; one that is sent is ignored.
    case none
    /// `application/json`, parsed before the handler runs (415 / 400 `invalid_json` otherwise).
    case json
    /// Raw bytes of any content type, untouched (webhooks verify signatures over them).
    case raw
}

/// A responder's handler. It runs on a worker thread with that thread's context.
public typealias Handler = @Sendable (Request, WorkerContext) throws -> Response

/// Names the audit operation of a state-changing route; failed attempts are recorded under it.
public struct AuditTarget: Sendable {
    /// Dotted operation name, e.g. `notification.read`.
    public let operation: String
    /// The entity type.
    public let entityType: String
    /// Where the entity's id is: the JSON body field of that name, or else the `{id}` path segment.
    public let bodyField: String?

    /// Creates a target.
    public init(_ operation: String, entity entityType: String, idInBody bodyField: String? = nil) {
        self.operation = operation
        self.entityType = entityType
        self.bodyField = bodyField
    }
}

/// One registered route and the guards the pipeline runs before its handler.
struct Route: Sendable {
    let method: String
    let pattern: String
    let segments: [Substring]
    let body: BodyKind
    let access: Access
    let rateLimits: [RateLimitPolicy]
    let audit: AuditTarget?
    /// The lane whose workers run it: `.stripe` for every route that calls Stripe.
    let lane: LaneKind
    let handler: Handler

    /// POST routes of signed-in callers honour `Idempotency-Key`.
    var isIdempotent: Bool {
        if method == "POST", case .roles = access { return true }
        return false
    }

    /// Literal segments count more than `{parameters}` when two patterns match the same path
    /// (counted once, when the route is added: routing compares it for every match).
    let specificity: Int

    func match(_ pathSegments: [Substring]) -> [String: String]? {
        guard pathSegments.count == segments.count else { return nil }
        var parameters: [String: String] = [:]
        for (pattern, value) in zip(segments, pathSegments) {
            if pattern.hasPrefix("{") && pattern.hasSuffix("}") {
                guard !value.isEmpty else { return nil }
                parameters[String(pattern.dropFirst().dropLast())] = String(value)
            } else if pattern != value {
                return nil
            }
        }
        return parameters
    }
}

/// The outcome of routing a method and path.
enum RouteResult {
    case found(Route, [String: String])
    case methodNotAllowed([String])
    case notFound
}

/// Maps method and path to a handler. Each endpoint family registers its routes in one place.
public struct Router: Sendable {
    /// By number of path segments: a path is only compared with the patterns of its length.
    private var routes: [Int: [Route]] = [:]
    /// Patterns without parameters, by method and pattern: a path equal to one is answered by
    /// it without comparing others (no pattern can be more specific than an exact one).
    private var exactRoutes: [String: Route] = [:]

    /// An empty router.
    public init() {}

    /// Registers `handler` for `method` on `pattern` (`/api/payments/{id}` style), with the guards
    /// the pipeline applies first: who may call it, its rate limits, and its audit operation.
    public mutating func add(
        _ method: String, _ pattern: String, body: BodyKind = .none, access: Access = .anyone,
        rateLimits: [RateLimitPolicy] = [], audit: AuditTarget? = nil, lane: LaneKind = .core,
        _ handler: @escaping Handler
    ) {
        let segments = Self.split(pattern)
        let route = Route(
            method: method, pattern: pattern, segments: segments, body: body, access: access,
            rateLimits: rateLimits, audit: audit, lane: lane, handler: handler,
            specificity: segments.filter { !$0.hasPrefix("{") }.count)
        routes[segments.count, default: []].append(route)
        if route.specificity == segments.count, exactRoutes[Self.exactKey(method, pattern)] == nil {
            exactRoutes[Self.exactKey(method, pattern)] = route
        }
    }

    /// Finds the route for the path: only the most specific matching patterns count (so
    /// `/api/payments/capture` is never taken as `/api/payments/{id}`); 405 lists their methods.
    func route(method: String, path: String) -> RouteResult {
        if let exact = exactRoutes[Self.exactKey(method, path)] { return .found(exact, [:]) }
        let segments = Self.split(path)
        let matches = (routes[segments.count] ?? []).compactMap { route in route.match(segments).map { (route, $0) } }
        guard let specificity = matches.map({ $0.0.specificity }).max() else { return .notFound }
        let candidates = matches.filter { $0.0.specificity == specificity }
        if let found = candidates.first(where: { $0.0.method == method })
            ?? candidates.first(where: { method == "HEAD" && $0.0.method == "GET" })
        {
            return .found(found.0, found.1)
        }
        return .methodNotAllowed(Set(candidates.map(\.0.method)).sorted())
    }

    private static func exactKey(_ method: String, _ path: String) -> String { method + " " + path }

    private static func split(_ path: String) -> [Substring] {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        return trimmed.split(separator: "/", omittingEmptySubsequences: false)
    }
}
