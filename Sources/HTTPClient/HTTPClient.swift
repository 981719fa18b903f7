internal import CCurl
import Foundation

/// An outgoing HTTP request.
public struct HTTPRequest: Sendable {
    /// `GET`, `POST`, `DELETE`, …
    public var method: String
    /// Absolute URL.
    public var url: String
    /// Header lines, sent in order.
    public var headers: [(String, String)]
    /// Body bytes (nil for none).
    public var body: [UInt8]?

    /// Creates a request.
    public init(method: String, url: String, headers: [(String, String)] = [], body: [UInt8]? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// A received HTTP response.
public struct HTTPResponse: Sendable {
    /// The status code.
    public let status: Int
    /// Header names (lower-cased) and values, in arrival order.
    public let headers: [(String, String)]
    /// The body.
    public let body: [UInt8]

    /// The first value of a header, by case-insensitive name.
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.0 == lowered }?.1
    }
}

/// A transport failure (no HTTP response at all).
public struct HTTPClientError: Error, CustomStringConvertible, Sendable {
    /// The failure class.
    public enum Kind: String, Sendable {
        /// DNS, refused connection, reset before any response.
        case connectionFailed
        /// Connect or total timeout.
        case timedOut
        /// Certificate or handshake failure.
        case tlsFailed
        /// The connection dropped while receiving.
        case receiveFailed
        /// The server refused the exchange (an SMTP login, STARTTLS or a recipient refused).
        case refused
        /// Anything else libcurl reports.
        case other
    }

    /// The class.
    public let kind: Kind
    /// libcurl's code and short text (never a URL with credentials, never headers).
    public let detail: String

    public var description: String { "HTTPClientError(\(kind.rawValue): \(detail))" }
}

/// Timeouts and trust settings.
public struct HTTPClientConfiguration: Sendable {
    /// Time allowed to establish the connection.
    public var connectTimeout: Duration
    /// Time allowed for the whole exchange.
    public var totalTimeout: Duration
    /// A CA bundle to trust instead of the system's (for a local fake); verification stays on.
    public var caBundlePath: String?

    /// Creates a configuration. Defaults: 5 s connect, 30 s total, system trust store.
    public init(
        connectTimeout: Duration = .seconds(5), totalTimeout: Duration = .seconds(30),
        caBundlePath: String? = nil
    ) {
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
        self.caBundlePath = caBundlePath
    }
}

/// A libcurl easy handle. Not Sendable: each thread owns its own client.
/// This module is the only importer of `CCurl`.
public final class HTTPClient {
    let handle: UnsafeMutableRawPointer
    let configuration: HTTPClientConfiguration

    /// Initialises libcurl's global state; call once before any thread starts.
    public static func initializeGlobalState() {
        _ = ccurl_global_init_all()
    }

    /// Creates a client; throws when libcurl cannot allocate a handle.
    public init(configuration: HTTPClientConfiguration = HTTPClientConfiguration()) throws {
        guard let handle = curl_easy_init() else {
            throw HTTPClientError(kind: .other, detail: "curl_easy_init returned NULL")
        }
        self.handle = handle
        self.configuration = configuration
    }

    deinit {
        curl_easy_cleanup(handle)
    }

    /// Performs one exchange. A non-2xx status is a response, not an error. `timeout`, when
    /// shorter, replaces the configured total timeout (a caller's remaining deadline).
    public func perform(_ request: HTTPRequest, timeout: Duration? = nil) throws(HTTPClientError) -> HTTPResponse {
        curl_easy_reset(handle)
        let sink = ResponseSink()
        let sinkPointer = Unmanaged.passUnretained(sink).toOpaque()
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        for (name, value) in request.headers {
            headerList = curl_slist_append(headerList, "\(name): \(value)")
        }
        // libcurl adds "Expect: 100-continue" to larger POSTs; it only adds a round trip here.
        headerList = curl_slist_append(headerList, "Expect:")
        defer { curl_slist_free_all(headerList) }

        setCommonOptions(url: request.url, protocols: "https,http", timeout: timeout)
        ccurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, request.method)
        ccurl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0)
        ccurl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList)
        ccurl_setopt_write_function(
            handle,
            { data, size, count, context in
                guard let data, let context else { return 0 }
                let sink = Unmanaged<ResponseSink>.fromOpaque(context).takeUnretainedValue()
                sink.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: size * count))
                return size * count
            })
        ccurl_setopt_pointer(handle, CURLOPT_WRITEDATA, sinkPointer)
        ccurl_setopt_header_function(
            handle,
            { data, size, count, context in
                guard let data, let context else { return 0 }
                let sink = Unmanaged<ResponseSink>.fromOpaque(context).takeUnretainedValue()
                sink.addHeaderLine(UnsafeRawBufferPointer(start: data, count: size * count))
                return size * count
            })
        ccurl_setopt_pointer(handle, CURLOPT_HEADERDATA, sinkPointer)
        if let body = request.body {
            ccurl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, body.count)
            body.withUnsafeBytes { bytes in
                _ = ccurl_setopt_pointer(
                    handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: bytes.baseAddress))
            }
        }

        let code = withExtendedLifetime(sink) { curl_easy_perform(handle) }
        guard code == CURLE_OK else { throw Self.error(for: code) }
        var status = 0
        ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: sink.headers, body: sink.body)
    }

    /// What every exchange sets, HTTP or SMTP, after `curl_easy_reset`: the URL and the protocols
    /// it may use, no signals, TLS verification (with the configured CA bundle), one connection
    /// per exchange, and both timeouts (`timeout`, when shorter, replaces the total one).
    func setCommonOptions(url: String, protocols: String, timeout: Duration?) {
        ccurl_setopt_string(handle, CURLOPT_URL, url)
        ccurl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, protocols)
        ccurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        ccurl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1)
        ccurl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2)
        // One attempt, one request: on a reused connection that died before answering, libcurl
        // would silently send the request again, below the caller's retry count and backoff.
        ccurl_setopt_long(handle, CURLOPT_FORBID_REUSE, 1)
        ccurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(configuration.connectTimeout))
        let total = min(timeout ?? configuration.totalTimeout, configuration.totalTimeout)
        ccurl_setopt_long(handle, CURLOPT_TIMEOUT_MS, max(1, Self.milliseconds(total)))
        if let caBundlePath = configuration.caBundlePath {
            ccurl_setopt_string(handle, CURLOPT_CAINFO, caBundlePath)
        }
    }

    private static func milliseconds(_ duration: Duration) -> Int {
        Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }

    /// The one place `CURLcode`s become Swift errors; `reply`, when the server answered one, is
    /// its last status (an SMTP reply code) and joins the detail.
    static func error(for code: CURLcode, reply: Int = 0) -> HTTPClientError {
        var text = "curl \(code.rawValue): \(String(cString: curl_easy_strerror(code)))"
        if reply > 0 { text += " (server reply \(reply))" }
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_PROXY:
            return HTTPClientError(kind: .connectionFailed, detail: text)
        case CURLE_OPERATION_TIMEDOUT:
            return HTTPClientError(kind: .timedOut, detail: text)
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE,
            CURLE_SSL_CERTPROBLEM:
            return HTTPClientError(kind: .tlsFailed, detail: text)
        case CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_SEND_ERROR:
            return HTTPClientError(kind: .receiveFailed, detail: text)
        case CURLE_LOGIN_DENIED, CURLE_USE_SSL_FAILED, CURLE_UPLOAD_FAILED:
            return HTTPClientError(kind: .refused, detail: text)
        default:
            return HTTPClientError(kind: .other, detail: text)
        }
    }
}

/// Collects one response's headers and body from libcurl's callbacks.
private final class ResponseSink {
    var body: [UInt8] = []
    var headers: [(String, String)] = []

    func addHeaderLine(_ raw: UnsafeRawBufferPointer) {
        let line = String(decoding: raw, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if line.hasPrefix("HTTP/") {
            headers.removeAll()  // a new status line (redirect or 100-continue) starts a new header block
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].lowercased()
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        headers.append((name, value))
    }
}
