import Foundation

/// An incoming API request, as the pipeline hands it to a responder.
public struct Request: Sendable {
    /// `GET`, `POST`, …
    public let method: String
    /// The decoded path (nginx's `DOCUMENT_URI`), without the query string.
    public let path: String
    /// Decoded query parameters (the last value wins for repeated names).
    public let query: [String: String]
    /// Request headers by lower-case name (`authorization`, `idempotency-key`, `cookie`, …).
    public let headers: [String: String]
    /// The exact body bytes.
    public internal(set) var body: [UInt8]
    /// nginx's request id (or one we generated), echoed as `X-Request-Id`.
    public let requestID: String
    /// The client address as nginx saw it (`REMOTE_ADDR`, no port).
    public let remoteAddress: String
    /// Values captured by `{name}` segments of the matched route.
    public internal(set) var pathParameters: [String: String] = [:]
    /// The parsed body for JSON routes.
    public internal(set) var json: JSONValue?
    /// The verified caller, for routes that require one.
    public internal(set) var identity: Identity?

    /// The caller of a route declared with `Access.roles`; the pipeline has already resolved it.
    public func requireIdentity() throws -> Identity {
        guard let identity else { throw AuthResolver.unauthenticated("authentication is required") }
        return identity
    }

    /// A header value by case-insensitive name.
    public func header(_ name: String) -> String? {
        headers[name.lowercased()]
    }

    /// The user agent, for audit rows.
    public var userAgent: String? { headers["user-agent"] }

    /// Builds a request from FastCGI parameters.
    init(parameters: [String: String], body: [UInt8], requestID: String) {
        method = parameters["REQUEST_METHOD"]?.uppercased() ?? "GET"
        let uri = parameters["DOCUMENT_URI"] ?? parameters["REQUEST_URI"].map { String($0.prefix { $0 != "?" }) } ?? "/"
        path = uri
        query = Self.parseQuery(parameters["QUERY_STRING"] ?? "")
        var headers: [String: String] = [:]
        for (name, value) in parameters where name.hasPrefix("HTTP_") {
            headers[Self.headerName(cgiName: name)] = value
        }
        if let contentType = parameters["CONTENT_TYPE"], !contentType.isEmpty { headers["content-type"] = contentType }
        self.headers = headers
        self.body = body
        self.requestID = requestID
        remoteAddress = parameters["REMOTE_ADDR"] ?? ""
    }

    /// `HTTP_IDEMPOTENCY_KEY` → `idempotency-key`.
    static func headerName(cgiName: String) -> String {
        var bytes = Array(cgiName.utf8.dropFirst(5))
        for index in bytes.indices {
            switch bytes[index] {
            case UInt8(ascii: "_"): bytes[index] = UInt8(ascii: "-")
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): bytes[index] += 32
            default: break
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Decodes `application/x-www-form-urlencoded`-style query text.
    static func parseQuery(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = decodeComponent(parts[0])
            let value = parts.count > 1 ? decodeComponent(parts[1]) : ""
            if let name, let value { result[name] = value }
        }
        return result
    }

    private static func decodeComponent(_ part: Substring) -> String? {
        part.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    /// True when the Content-Type is `application/json` (parameters such as charset allowed).
    var hasJSONContentType: Bool {
        guard let type = headers["content-type"] else { return false }
        let media = type.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        return media.lowercased() == "application/json"
    }
}

/// What a responder returns.
public struct Response: Sendable {
    /// HTTP status.
    public var status: Int
    /// Extra headers (the pipeline adds `Content-Type` defaults and `X-Request-Id`).
    public var headers: [(String, String)]
    /// The body bytes.
    public var body: [UInt8]

    /// A raw response.
    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON response of an encodable value.
    public static func json(_ value: some Encodable, status: Int = 200) -> Response {
        Response(status: status, headers: [("Content-Type", "application/json")], body: JSONCoding.encode(value))
    }

    /// A plain-text response.
    public static func text(_ text: String, status: Int = 200, contentType: String = "text/plain; charset=utf-8")
        -> Response
    {
        Response(status: status, headers: [("Content-Type", contentType)], body: Array(text.utf8))
    }
}
