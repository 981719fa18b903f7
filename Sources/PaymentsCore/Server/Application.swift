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
        BrowserConfigResponder().addRoutes(to: &router)
        AccountResponder().addRoutes(to: &router)
        WebhookResponder().addRoutes(to: &router)
        IntentsResponder().addRoutes(to: &router)
        ListingsResponder().addRoutes(to: &router)
        CaptureResponder().addRoutes(to: &router)
        ConnectResponder().addRoutes(to: &router)
        SellerMoneyResponder().addRoutes(to: &router)
        MilestonesResponder().addRoutes(to: &router)
        DisputesResponder().addRoutes(to: &router)
        AdminDisputesResponder().addRoutes(to: &router)
        AdminPaymentsResponder().addRoutes(to: &router)
        AdminWebhookEventsResponder().addRoutes(to: &router)
        AdminAuditLogResponder().addRoutes(to: &router)
        AdminRevenueResponder().addRoutes(to: &router)
        AdminNotificationsResponder().addRoutes(to: &router)
        if shared.configuration.diagnosticsEnabled {
            DiagnosticsResponder().addRoutes(to: &router)
        }
        self.router = router
    }

    /// Answers one FastCGI request on the calling worker's context.
    public func respond(to fastCGIRequest: FastCGIRequest, context: WorkerContext) -> FastCGIResponse {
        let started = ContinuousClock.now
        let roundTripsBefore = context.database.roundTrips
        // Lane saturation: how many of the lane's workers are running a request right now.
        shared.metrics.setWorkerBusy(lane: context.lane.rawValue, true)
        defer { shared.metrics.setWorkerBusy(lane: context.lane.rawValue, false) }
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
            request.body = try Self.completeBody(fastCGIRequest.body, limit: shared.configuration.maximumBodyBytes)
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
            since: started, databaseRoundTrips: context.database.roundTrips - roundTripsBefore, context: context)
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

    /// The request's log line; `databaseRoundTrips` counts every statement, prepare and
    /// transaction command it sent to PostgreSQL (its own, not other threads').
    private func log(
        request: Request, route: String, status: Int, errorCode: String?, since started: ContinuousClock.Instant,
        databaseRoundTrips: Int = 0, context: WorkerContext
    ) {
        let elapsed = ContinuousClock.now - started
        let microseconds = Int(
            elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000)
        shared.metrics.recordRequest(
            lane: context.lane.rawValue, route: route, status: status, microseconds: microseconds)
        var fields: [(String, LogValue)] = [
            ("request_id", .string(request.requestID)),
            ("method", .string(request.method)),
            ("route", .string(route)),
            ("lane", .string(context.lane.rawValue)),
            ("status", .int(status)),
            ("duration_ms", .double(Double(microseconds) / 1000)),
            ("db_round_trips", .int(databaseRoundTrips)),
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
