import Foundation
import Postgres

/// The shared guards, in the order every route meets them.
extension Application {
    /// Guards in order — IP rate limit, authentication and CSRF, profile rate limit, body checks,
    /// idempotency — then the handler.
    func runGuarded(_ route: Route, request: inout Request, context: WorkerContext) throws -> Response {
        let database = context.database
        let limiter = shared.configuration.rateLimiter
        for policy in route.rateLimits where policy.isKeyedByIP {
            try limiter.check(
                policy, key: policy.key(profileID: nil, remoteAddress: request.remoteAddress), on: database)
        }
        if case .roles(let roles) = route.access {
            let resolver = AuthResolver(configuration: shared.configuration.auth)
            let identity = try resolver.authenticate(request, on: database)
            request.identity = identity
            try resolver.authorize(identity, request: request, roles: roles)
        }
        for policy in route.rateLimits where !policy.isKeyedByIP {
            let key = policy.key(
                profileID: request.identity?.profileID.uuidString.lowercased(),
                remoteAddress: request.remoteAddress)
            try limiter.check(policy, key: key, on: database)
        }
        if route.body == .json { request.json = try Self.parseJSONBody(request) }

        guard route.isIdempotent, let identity = request.identity,
            let key = try IdempotencyStore.validatedKey(request.header("idempotency-key"))
        else {
            return try route.handler(request, context)
        }
        let profileID = identity.profileID.uuidString.lowercased()
        let hash = IdempotencyStore.requestHash(request, route: route.pattern)
        let owner: String
        switch try IdempotencyStore.begin(
            profileID: profileID, key: key, route: route.pattern, hash: hash,
            lease: shared.configuration.requestLease,
            sealingKey: shared.configuration.storedResponseKey, on: database)
        {
        case .replay(let stored): return stored
        case .proceed(let claim): owner = claim
        }
        let response: Response
        do {
            response = try route.handler(request, context)
        } catch {
            let apiError = mapError(error, requestID: request.requestID)
            // A failure the client is told to retry (rate limit, database or Stripe unavailable,
            // work in progress elsewhere, unexpected error) must not be replayed to that retry:
            // release the key.
            if apiError.status >= 500 || apiError.headers.contains(where: { $0.0 == "Retry-After" }) {
                IdempotencyStore.release(profileID: profileID, key: key, owner: owner, on: database)
                throw apiError
            }
            let envelope = Self.envelope(apiError, requestID: request.requestID)
            try storeOutcome(envelope, profileID: profileID, key: key, owner: owner, database: database)
            throw apiError
        }
        try storeOutcome(response, profileID: profileID, key: key, owner: owner, database: database)
        return response
    }

    /// Stores what the handler did under its key. The work is done, so a passing database fault
    /// (a full pool, a lost connection) is retried a few times: a key left `in_progress` would
    /// later be taken over, and its handler run again.
    private func storeOutcome(
        _ response: Response, profileID: String, key: String, owner: String,
        database: Database
    ) throws {
        var attempt = 0
        while true {
            do {
                return try IdempotencyStore.complete(
                    profileID: profileID, key: key, owner: owner, response: response,
                    sealingKey: shared.configuration.storedResponseKey, on: database)
            } catch let error as DatabaseError where error.isTransient && attempt < 3 {
                attempt += 1
                Thread.sleep(forTimeInterval: 0.2 * Double(attempt))
            }
        }
    }

    static func parseJSONBody(_ request: Request) throws -> JSONValue? {
        if request.body.isEmpty { return nil }
        guard request.hasJSONContentType else { throw APIError.unsupportedMediaType }
        do {
            return try JSONParser.parse(request.body)
        } catch {
            throw APIError.invalidJSON(error)
        }
    }
}
