import Foundation
import HTTPClient

/// How the client reaches Stripe. Defaults follow Stripe's own libraries where they have one.
public struct StripeConfiguration: Sendable {
    /// `sk_test_…` / `sk_live_…`. Sent only in the Authorization header; never logged.
    public var secretKey: String
    /// `https://api.stripe.com` unless pointed at the fake.
    public var apiBase: String
    /// The pinned API version sent as `Stripe-Version`.
    public var apiVersion: String
    /// Retries after the first attempt (network errors, 409, 429, 5xx).
    public var maximumRetries: Int
    /// First backoff; doubles each retry, with jitter, capped at `maximumBackoff`.
    public var initialBackoff: Duration
    /// Largest single backoff.
    public var maximumBackoff: Duration
    /// Bound on every Stripe call of one request together, retries included
    /// (`STRIPE_DEADLINE_SECONDS`); outside a request, on each call.
    public var requestDeadline: Duration
    /// Connect and per-attempt timeouts, and the CA bundle (TLS verification is always on).
    public var http: HTTPClientConfiguration
    /// The `User-Agent` of every call; the service puts its version in it (`PaymentsVersion`).
    public var userAgent: String
    /// Told of every call once it ends (retries included), so the caller can count and time
    /// Stripe calls without this module knowing how they are exposed. Runs on the calling thread.
    public var observer: (@Sendable (StripeCallObservation) -> Void)?

    /// The pinned API version.
    public static let pinnedAPIVersion = "2024-06-20"

    /// Whether the key is a live-mode key (`sk_live_…`, `rk_live_…`): events must say the same `livemode`.
    public var isLiveMode: Bool { secretKey.hasPrefix("sk_live_") || secretKey.hasPrefix("rk_live_") }

    /// Creates a configuration with Stripe-like defaults: 2 retries, 0.5 s → 4 s backoff, 10 s
    /// connect, 30 s per attempt, 20 s for a whole request.
    public init(
        secretKey: String, apiBase: String = "https://api.stripe.com", apiVersion: String = pinnedAPIVersion,
        maximumRetries: Int = 2, initialBackoff: Duration = .milliseconds(500),
        maximumBackoff: Duration = .seconds(4), requestDeadline: Duration = .seconds(20),
        http: HTTPClientConfiguration = HTTPClientConfiguration(
            connectTimeout: .seconds(10),
            totalTimeout: .seconds(30)),
        userAgent: String = "marketplace-payments (Swift; libcurl)"
    ) {
        self.secretKey = secretKey
        self.apiBase = apiBase.hasSuffix("/") ? String(apiBase.dropLast()) : apiBase
        self.apiVersion = apiVersion
        self.maximumRetries = maximumRetries
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
        self.requestDeadline = requestDeadline
        self.http = http
        self.userAgent = userAgent
    }
}

/// A Stripe API client over one libcurl handle; owned by one thread (not Sendable).
/// This module is the only user of `HTTPClient`.
public final class StripeClient {
    private let configuration: StripeConfiguration
    private let http: HTTPClient
    /// When the current request's time is up (nil outside a request).
    private var deadline: ContinuousClock.Instant?

    /// Creates a client; throws when libcurl cannot allocate a handle.
    public init(configuration: StripeConfiguration) throws {
        self.configuration = configuration
        http = try HTTPClient(configuration: configuration.http)
    }

    /// Starts one request's time budget: every call until `endRequest` shares
    /// `requestDeadline`, so a request's retries and follow-up calls together stay within it.
    public func beginRequest() {
        deadline = ContinuousClock.now + configuration.requestDeadline
    }

    /// Ends the request's budget; later calls each get a budget of their own.
    public func endRequest() {
        deadline = nil
    }

    // MARK: Calls the app makes

    // A payment's calls take the connected `account` that owns its objects (a direct charge:
    // sent as `Stripe-Account`), or nil for the platform's own (a destination or platform charge).
    // It has no default: every caller says which, so no call of a direct charge can forget it.

    /// `POST /v1/payment_intents`.
    public func createPaymentIntent(
        _ parameters: [(String, StripeParameter)], idempotencyKey: String, account: String?
    ) throws(StripeError) -> PaymentIntent {
        try post("/v1/payment_intents", parameters, idempotencyKey: idempotencyKey, account: account)
    }

    /// A charge with its balance transaction expanded (Stripe's fee and the net).
    public func retrieveChargeWithBalanceTransaction(_ id: String, account: String?) throws(StripeError)
        -> Charge
    {
        try get(
            "/v1/charges/\(Self.pathComponent(id))", query: [("expand", .array(["balance_transaction"]))],
            account: account)
    }

    /// `GET /v1/payment_intents/{id}` with `latest_charge` expanded.
    public func retrievePaymentIntent(_ id: String, account: String?) throws(StripeError) -> PaymentIntent {
        try get(
            "/v1/payment_intents/\(Self.pathComponent(id))", query: [("expand", ["latest_charge"])], account: account)
    }

    /// `POST /v1/payment_intents/{id}/capture`.
    /// `application_fee_amount` replaces the fee set at creation (a partial capture's smaller fee).
    public func capturePaymentIntent(
        _ id: String, amountToCapture: Int64?, applicationFeeAmount: Int64? = nil,
        idempotencyKey: String, account: String?
    ) throws(StripeError) -> PaymentIntent {
        var parameters: [(String, StripeParameter)] =
            amountToCapture.map { [("amount_to_capture", .integer($0))] } ?? []
        if let applicationFeeAmount { parameters.append(("application_fee_amount", .integer(applicationFeeAmount))) }
        return try post(
            "/v1/payment_intents/\(Self.pathComponent(id))/capture", parameters, idempotencyKey: idempotencyKey,
            account: account)
    }

    /// `POST /v1/payment_intents/{id}/cancel`.
    public func cancelPaymentIntent(_ id: String, reason: String?, idempotencyKey: String, account: String?)
        throws(StripeError) -> PaymentIntent
    {
        let parameters: [(String, StripeParameter)] = reason.map { [("cancellation_reason", .string($0))] } ?? []
        return try post(
            "/v1/payment_intents/\(Self.pathComponent(id))/cancel", parameters, idempotencyKey: idempotencyKey,
            account: account)
    }

    /// `POST /v1/refunds`.
    public func createRefund(
        _ parameters: [(String, StripeParameter)], idempotencyKey: String, account: String?
    ) throws(StripeError) -> Refund {
        try post("/v1/refunds", parameters, idempotencyKey: idempotencyKey, account: account)
    }

    /// `POST /v1/accounts`.
    public func createAccount(_ parameters: [(String, StripeParameter)], idempotencyKey: String) throws(StripeError)
        -> Account
    {
        try post("/v1/accounts", parameters, idempotencyKey: idempotencyKey)
    }

    /// `POST /v1/accounts/{id}` (e.g. its payout schedule).
    public func updateAccount(_ id: String, _ parameters: [(String, StripeParameter)], idempotencyKey: String)
        throws(StripeError) -> Account
    {
        try post("/v1/accounts/\(Self.pathComponent(id))", parameters, idempotencyKey: idempotencyKey)
    }

    /// `GET /v1/accounts/{id}`.
    public func retrieveAccount(_ id: String) throws(StripeError) -> Account {
        try get("/v1/accounts/\(Self.pathComponent(id))")
    }

    /// `POST /v1/account_links`.
    public func createAccountLink(_ parameters: [(String, StripeParameter)], idempotencyKey: String) throws(StripeError)
        -> AccountLink
    {
        try post("/v1/account_links", parameters, idempotencyKey: idempotencyKey)
    }

    /// `POST /v1/accounts/{id}/login_links`.
    public func createLoginLink(account: String, idempotencyKey: String) throws(StripeError) -> LoginLink {
        try post("/v1/accounts/\(Self.pathComponent(account))/login_links", [], idempotencyKey: idempotencyKey)
    }

    /// `POST /v1/transfers`.
    public func createTransfer(_ parameters: [(String, StripeParameter)], idempotencyKey: String) throws(StripeError)
        -> Transfer
    {
        try post("/v1/transfers", parameters, idempotencyKey: idempotencyKey)
    }

    /// `POST /v1/transfers/{id}/reversals`.
    public func reverseTransfer(_ id: String, amount: Int64?, idempotencyKey: String) throws(StripeError)
        -> TransferReversal
    {
        let parameters: [(String, StripeParameter)] = amount.map { [("amount", .integer($0))] } ?? []
        return try post("/v1/transfers/\(Self.pathComponent(id))/reversals", parameters, idempotencyKey: idempotencyKey)
    }

    /// `POST /v1/disputes/{id}` (evidence, `submit`), on `account` for a direct charge's dispute.
    public func updateDispute(
        _ id: String, _ parameters: [(String, StripeParameter)], idempotencyKey: String, account: String?
    ) throws(StripeError) -> Dispute {
        try post("/v1/disputes/\(Self.pathComponent(id))", parameters, idempotencyKey: idempotencyKey, account: account)
    }

    // MARK: Transport

    /// A POST with its caller-supplied, deterministic `Idempotency-Key` (reused on every retry).
    public func post<T: Decodable>(
        _ path: String, _ parameters: [(String, StripeParameter)], idempotencyKey: String,
        account: String? = nil
    ) throws(StripeError) -> T {
        let body = Array(FormEncoder.encode(parameters).utf8)
        return try decode(
            try send(method: "POST", path: path, body: body, idempotencyKey: idempotencyKey, account: account).body)
    }

    /// A GET with optional query parameters (same encoding as bodies).
    public func get<T: Decodable>(_ path: String, query: [(String, StripeParameter)] = [], account: String? = nil)
        throws(StripeError) -> T
    {
        let fullPath = query.isEmpty ? path : path + "?" + FormEncoder.encode(query)
        return try decode(
            try send(method: "GET", path: fullPath, body: nil, idempotencyKey: nil, account: account).body)
    }

    /// `GET /v1/balance`, for its answer only: proves the key and the network work, and returns
    /// Stripe's clock (the `Date` header; nil when absent or unreadable).
    public func fetchServerDate() throws(StripeError) -> Date? {
        let response = try send(method: "GET", path: "/v1/balance", body: nil, idempotencyKey: nil, account: nil)
        return response.header("date").flatMap(Self.httpDate)
    }

    /// An IMF-fixdate (`Sun, 06 Dec 2026 19:22:56 GMT`), the form HTTP servers send.
    static func httpDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
    }

    /// Every object of a list endpoint (`GET /v1/payment_intents`, …) matching `query`, following
    /// `starting_after` a page of 100 at a time, newest first as Stripe lists them.
    public func listAll<T: StripeObject>(
        _ path: String, query: [(String, StripeParameter)] = [], account: String? = nil
    ) throws(StripeError) -> [T] {
        var objects: [T] = []
        var cursor: String?
        repeat {
            var pageQuery = query + [("limit", .integer(100))]
            if let cursor { pageQuery.append(("starting_after", .string(cursor))) }
            let page: StripeList<T> = try get(path, query: pageQuery, account: account)
            objects += page.data
            cursor = page.hasMore ? page.data.last?.id : nil
        } while cursor != nil
        return objects
    }

    /// A GET whose body the caller reads itself (a list whose items are kept as Stripe sent them).
    public func getBytes(_ path: String, query: [(String, StripeParameter)] = [], account: String? = nil)
        throws(StripeError) -> [UInt8]
    {
        let fullPath = query.isEmpty ? path : path + "?" + FormEncoder.encode(query)
        return try send(method: "GET", path: fullPath, body: nil, idempotencyKey: nil, account: account).body
    }

    private func decode<T: Decodable>(_ body: [UInt8]) throws(StripeError) -> T {
        do {
            return try StripeJSON.decoder.decode(T.self, from: body)
        } catch {
            throw StripeError(
                kind: .invalidResponse, httpStatus: 200, type: nil, code: nil, declineCode: nil, param: nil,
                message: "Stripe's response was not a \(T.self).", requestID: nil, attempts: 1)
        }
    }

    /// Sends with retries: network errors, 409, 429 and 5xx are retried (unless Stripe says
    /// `Stripe-Should-Retry: false`; `true` forces a retry) with exponential backoff and jitter,
    /// within `maximumRetries` and the request's deadline; a retry the deadline leaves no room for
    /// ends the call as `.timeout`. Every error says whether an attempt may have reached Stripe
    /// and succeeded there (`mayHaveSucceeded`). Only GETs and keyed POSTs are sent here.
    private func send(
        method: String, path: String, body: [UInt8]?, idempotencyKey: String?,
        account: String?
    ) throws(StripeError) -> HTTPResponse {
        precondition(method == "GET" || idempotencyKey != nil, "every Stripe POST carries an idempotency key")
        var headers: [(String, String)] = [
            ("Authorization", "Bearer \(configuration.secretKey)"),
            ("Stripe-Version", configuration.apiVersion),
            ("User-Agent", configuration.userAgent),
            ("Accept", "application/json"),
        ]
        if let idempotencyKey { headers.append(("Idempotency-Key", idempotencyKey)) }
        if let account { headers.append(("Stripe-Account", account)) }
        if body != nil { headers.append(("Content-Type", "application/x-www-form-urlencoded")) }
        let request = HTTPRequest(method: method, url: configuration.apiBase + path, headers: headers, body: body)

        let deadline = self.deadline ?? ContinuousClock.now + configuration.requestDeadline
        let started = ContinuousClock.now
        do throws(StripeError) {
            let response = try sendWithRetries(request, deadline: deadline)
            observe(method: method, path: path, outcome: "ok", since: started)
            return response
        } catch {
            observe(method: method, path: path, outcome: error.kind.rawValue, since: started)
            throw error
        }
    }

    private func observe(method: String, path: String, outcome: String, since started: ContinuousClock.Instant) {
        guard let observer = configuration.observer else { return }
        observer(
            StripeCallObservation(
                operation: Self.operation(method: method, path: path), outcome: outcome,
                duration: ContinuousClock.now - started))
    }

    /// A bounded name for a call: the method and the path with its ids replaced
    /// (`POST /v1/payment_intents/{id}/capture`). Stripe paths alternate collection and id after
    /// `/v1`, so every second segment from there is an id; the query is dropped.
    static func operation(method: String, path: String) -> String {
        let segments = path.prefix { $0 != "?" }.split(separator: "/")
        let named = segments.enumerated().map { index, segment in index > 0 && index % 2 == 0 ? "{id}" : segment }
        return "\(method) /" + named.joined(separator: "/")
    }

    private func sendWithRetries(_ request: HTTPRequest, deadline: ContinuousClock.Instant) throws(StripeError)
        -> HTTPResponse
    {
        var attempt = 0
        var mayHaveSucceeded = false
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .milliseconds(1) else {
                throw StripeError.deadlineExceeded(attempts: attempt, mayHaveSucceeded: mayHaveSucceeded)
            }
            attempt += 1
            var failure: StripeError
            var retryAfter: Duration?
            switch Result(catching: { () throws(HTTPClientError) in try http.perform(request, timeout: remaining) }) {
            case .success(let response) where (200..<300).contains(response.status):
                return response
            case .success(let response):
                failure = StripeError.from(
                    status: response.status, body: response.body,
                    requestID: response.header("request-id"), attempts: attempt)
                // A 5xx may have been answered after the work was done; a 409 means another
                // request with this key is still running and may succeed.
                mayHaveSucceeded = mayHaveSucceeded || response.status >= 500 || response.status == 409
                failure.mayHaveSucceeded = mayHaveSucceeded
                guard
                    Self.shouldRetry(status: response.status, shouldRetryHeader: response.header("stripe-should-retry"))
                else { throw failure }
                retryAfter = response.header("retry-after").flatMap(Int.init).map { .seconds($0) }
            case .failure(let error):
                // Only a connection that never opened is sure not to have delivered the request.
                mayHaveSucceeded = mayHaveSucceeded || (error.kind != .connectionFailed && error.kind != .tlsFailed)
                failure = StripeError.transport(error, attempts: attempt)
                failure.mayHaveSucceeded = mayHaveSucceeded
            }
            guard attempt <= configuration.maximumRetries else { throw failure }
            let wait = max(retryAfter ?? .zero, backoff(beforeRetry: attempt))
            guard ContinuousClock.now + wait < deadline else {
                throw StripeError.deadlineExceeded(attempts: attempt, mayHaveSucceeded: mayHaveSucceeded)
            }
            Thread.sleep(forTimeInterval: Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18)
        }
    }

    /// Stripe's rule: its `Stripe-Should-Retry` header decides when present; otherwise retry
    /// conflicts (409, e.g. `lock_timeout`), rate limits (429) and server errors (5xx).
    static func shouldRetry(status: Int, shouldRetryHeader: String?) -> Bool {
        switch shouldRetryHeader {
        case "true": return true
        case "false": return false
        default: return status == 409 || status == 429 || status >= 500
        }
    }

    private func backoff(beforeRetry retry: Int) -> Duration {
        let exponential = configuration.initialBackoff * (1 << min(retry - 1, 10))
        let capped = min(exponential, configuration.maximumBackoff)
        return capped * Double.random(in: 0.5...1.0)
    }

    /// Ids from our database are Stripe's; still, never let one change the path.
    static func pathComponent(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "_-"))) ?? ""
    }
}

/// One finished Stripe call, as `StripeConfiguration.observer` is told of it.
public struct StripeCallObservation: Sendable {
    /// The method and templated path (`POST /v1/refunds`, `GET /v1/accounts/{id}`): bounded.
    public let operation: String
    /// `ok`, or the failure's `StripeError.Kind` (`card`, `api`, `timeout`, …).
    public let outcome: String
    /// From the first attempt to the answer, retries and backoff included.
    public let duration: Duration
}

/// A reversal of a Transfer.
public struct TransferReversal: StripeObject {
    public let id: String
    public let amount: Int64
    public let transfer: String?
}

extension StripeClient {
    /// Initialises libcurl once per process, before any worker thread starts.
    public static func initializeGlobalState() {
        HTTPClient.initializeGlobalState()
    }
}
