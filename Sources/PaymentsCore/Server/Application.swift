import Cryptography
import FastCGI
import Foundation
import Postgres
import Stripe

/// The request pipeline: request id, body limits, routing, the shared guards (auth, CSRF, rate
/// limit, content checks, idempotency), the handler, and the single place where every error
/// becomes the JSON envelope; then one log line per request.
public struct Application: Sendable {
    /// Process-wide state.
    public let shared: SharedState
    /// All routes of all families.
    public let router: Router

    /// Builds the application with every endpoint family registered.
    public init(shared: SharedState) {
        self.shared = shared
        var router = Router()
        OpsResponder().addRoutes(to: &router)
        AccountResponder().addRoutes(to: &router)
        WebhookResponder().addRoutes(to: &router)
        IntentsResponder().addRoutes(to: &router)
        CaptureResponder().addRoutes(to: &router)
        ConnectResponder().addRoutes(to: &router)
        MilestonesResponder().addRoutes(to: &router)
        DisputesResponder().addRoutes(to: &router)
        AdminDisputesResponder().addRoutes(to: &router)
        if shared.configuration.diagnosticsEnabled {
            DiagnosticsResponder().addRoutes(to: &router)
        }
        self.router = router
    }

    /// Answers one FastCGI request on the calling worker's context.
    public func respond(to fastCGIRequest: FastCGIRequest, context: WorkerContext) -> FastCGIResponse {
        let started = ContinuousClock.now
        let parameters = fastCGIRequest.parameters
        let requestID = Self.requestID(from: parameters["REQUEST_ID"])
        var request = Request(parameters: parameters, body: [], requestID: requestID)
        var matched: Route?

        var response: Response
        var errorCode: String?
        // One time budget for every Stripe call this request makes (STRIPE_DEADLINE_SECONDS).
        context.stripe.beginRequest()
        defer { context.stripe.endRequest() }
        do {
            request = Request(
                parameters: parameters,
                body: try Self.completeBody(
                    fastCGIRequest.body,
                    limit: shared.configuration.maximumBodyBytes), requestID: requestID)
            switch router.route(method: request.method, path: request.path) {
            case .notFound:
                throw APIError.notFound
            case .methodNotAllowed(let allowed):
                throw APIError.methodNotAllowed(allowed: allowed)
            case .found(let route, let pathParameters):
                matched = route
                request.pathParameters = pathParameters
                if route.lane != context.lane { countMisroute(route, context: context) }
                response = try runGuarded(route, request: &request, context: context)
            }
        } catch {
            let apiError = mapError(error, requestID: requestID)
            errorCode = apiError.code
            response = Self.envelope(apiError, requestID: requestID)
        }
        // A 503 says the database or the lane was unavailable: an audit write would only wait on
        // the same unavailable database (what did run is audited in its own transaction).
        if let errorCode, response.status != 503, let audit = matched?.audit {
            FailureAudit(shared: shared).record(audit, errorCode: errorCode, request: request, context: context)
        }
        log(
            request: request, route: matched?.pattern ?? "unmatched", status: response.status, errorCode: errorCode,
            since: started, context: context)
        return Self.finalize(response, requestID: requestID)
    }

    /// The answer to a request that waited too long for a free worker of its lane: `503
    /// server_busy`; nothing of it ran, so nothing is audited or written.
    public func respondBusy(to fastCGIRequest: FastCGIRequest, waited: Duration, context: WorkerContext)
        -> FastCGIResponse
    {
        let started = ContinuousClock.now - waited
        let requestID = Self.requestID(from: fastCGIRequest.parameters["REQUEST_ID"])
        let request = Request(parameters: fastCGIRequest.parameters, body: [], requestID: requestID)
        let route = router.route(method: request.method, path: request.path)
        let pattern = if case .found(let matched, _) = route { matched.pattern } else { "unmatched" }
        let response = Self.envelope(.serverBusy, requestID: requestID)
        shared.metrics.increment("payments_lane_rejections_total{lane=\"\(context.lane.rawValue)\"}")
        log(
            request: request, route: pattern, status: response.status, errorCode: APIError.serverBusy.code,
            since: started,
            context: context)
        return Self.finalize(response, requestID: requestID)
    }

    /// nginx sent a route to the other lane's socket: it is served anyway (refusing would
    /// fail a payment over a routing slip), but counted and logged for the operator.
    private func countMisroute(_ route: Route, context: WorkerContext) {
        shared.metrics.increment(
            "payments_lane_misrouted_total{route=\"\(route.pattern)\",lane=\"\(context.lane.rawValue)\"}")
        shared.logger.warning(
            "route served on the wrong lane",
            [
                ("route", .string(route.pattern)), ("expected", .string(route.lane.rawValue)),
                ("lane", .string(context.lane.rawValue)),
            ])
    }

    /// Guards in order — IP rate limit, authentication and CSRF, profile rate limit, body checks,
    /// idempotency — then the handler.
    private func runGuarded(_ route: Route, request: inout Request, context: WorkerContext) throws -> Response {
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

    /// The one place an error becomes the envelope `{"error":{"code","message","request_id"}}`.
    static func envelope(_ error: APIError, requestID: String) -> Response {
        struct Body: Encodable {
            struct Detail: Encodable {
                let code: String
                let message: String
                let request_id: String
            }
            let error: Detail
        }
        var response = Response.json(
            Body(error: .init(code: error.code, message: error.message, request_id: requestID)), status: error.status)
        response.headers.append(contentsOf: error.headers)
        return response
    }

    /// Classifies any thrown error; unknown errors are logged (type only) and become 500.
    private func mapError(_ error: any Error, requestID: String) -> APIError {
        switch error {
        case let apiError as APIError:
            return apiError
        case let stripeError as StripeError:
            shared.logger.error(
                "stripe call failed",
                [
                    ("request_id", .string(requestID)), ("error", .string(stripeError.description)),
                ])
            return .from(stripeError)
        case let databaseError as DatabaseError:
            switch databaseError.kind {
            case .poolExhausted:
                shared.metrics.increment("payments_database_pool_timeouts_total")
                return .databasePoolExhausted
            case .unavailable:
                shared.metrics.increment("payments_database_unavailable_total")
                shared.logger.error("database unavailable", [("request_id", .string(requestID))])
                return .databaseUnavailable
            case .serializationFailure, .deadlockDetected, .lockNotAvailable, .queryCanceled:
                return .databaseBusy
            case .invalidData:
                shared.logger.warning(
                    "database refused a value",
                    [
                        ("request_id", .string(requestID)), ("error", .string(databaseError.description)),
                    ])
                return .invalidInput
            default:
                shared.logger.error(
                    "database error",
                    [
                        ("request_id", .string(requestID)), ("error", .string(databaseError.description)),
                    ])
                return .internalError
            }
        case let rowError as RowDecodingError:
            // A query and the code reading it disagree: our bug, named in the log (columns only).
            shared.logger.error(
                "row decoding failed", [("request_id", .string(requestID)), ("error", .string(rowError.description))])
            return .internalError
        default:
            shared.logger.error(
                "unhandled error",
                [
                    ("request_id", .string(requestID)), ("error_type", .string(String(describing: type(of: error)))),
                ])
            return .internalError
        }
    }

    private func log(
        request: Request, route: String, status: Int, errorCode: String?, since started: ContinuousClock.Instant,
        context: WorkerContext
    ) {
        let elapsed = ContinuousClock.now - started
        let microseconds = Int(
            elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000)
        shared.metrics.recordRequest(
            lane: context.lane.rawValue, route: route, status: status, microseconds: microseconds,
            worker: context.workerIndex)
        var fields: [(String, LogValue)] = [
            ("request_id", .string(request.requestID)),
            ("method", .string(request.method)),
            ("route", .string(route)),
            ("lane", .string(context.lane.rawValue)),
            ("status", .int(status)),
            ("duration_ms", .double(Double(microseconds) / 1000)),
        ]
        if let identity = request.identity {
            fields.append(("profile_id", .string(identity.profileID.uuidString.lowercased())))
        }
        if let errorCode { fields.append(("error_code", .string(errorCode))) }
        shared.logger.info("request", fields)
    }

    private static func finalize(_ response: Response, requestID: String) -> FastCGIResponse {
        var headers = response.headers
        if !headers.contains(where: { $0.0.lowercased() == "content-type" }) {
            headers.append(("Content-Type", "application/json"))
        }
        headers.append(("X-Request-Id", requestID))
        headers.append(("Cache-Control", "no-store"))
        return FastCGIResponse(status: response.status, headers: headers, body: response.body)
    }

    private static func completeBody(_ body: RequestBody, limit: Int) throws -> [UInt8] {
        switch body {
        case .complete(let bytes): return bytes
        case .tooLarge: throw APIError.payloadTooLarge(limit: limit)
        case .malformed: throw APIError.malformedBody
        }
    }

    private static func parseJSONBody(_ request: Request) throws -> JSONValue? {
        if request.body.isEmpty { return nil }
        guard request.hasJSONContentType else { throw APIError.unsupportedMediaType }
        do {
            return try JSONParser.parse(request.body)
        } catch {
            throw APIError.invalidJSON(error)
        }
    }

    /// nginx's `$request_id` (32 hex digits) when present and well-formed; otherwise a fresh one.
    static func requestID(from candidate: String?) -> String {
        if let candidate, (1...64).contains(candidate.utf8.count),
            candidate.utf8.allSatisfy({ $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "-") })
        {
            return candidate
        }
        return Hex.encode(Digest.randomBytes(16))
    }
}

extension UInt8 {
    var isASCIIAlphanumeric: Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(self)
            || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(self)
    }
}

/// Adapts the application to the FastCGI server's per-thread handler.
public struct WorkerHandler: RequestHandler {
    let application: Application
    let context: WorkerContext

    /// Creates the handler for one worker thread.
    public init(application: Application, context: WorkerContext) {
        self.application = application
        self.context = context
    }

    public func respond(to request: FastCGIRequest) -> FastCGIResponse {
        application.respond(to: request, context: context)
    }

    public func respondBusy(to request: FastCGIRequest, waited: Duration) -> FastCGIResponse {
        application.respondBusy(to: request, waited: waited, context: context)
    }
}
