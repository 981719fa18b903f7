internal import CFastCGI

#if canImport(Glibc)
    import Glibc
#endif

/// The request body as read from the FastCGI stdin stream.
public enum RequestBody: Sendable, Equatable {
    /// Exactly `CONTENT_LENGTH` bytes, byte for byte as the client sent them.
    case complete([UInt8])
    /// `CONTENT_LENGTH` exceeds the limit; the body was not read.
    case tooLarge(declaredLength: Int)
    /// The stream ended before `CONTENT_LENGTH` bytes arrived, or the length was not a number.
    case malformed

    /// The body was read to its end.
    var isComplete: Bool {
        if case .complete = self { true } else { false }
    }
}

/// One FastCGI request: its parameters (CGI environment) and body.
public struct FastCGIRequest: Sendable {
    /// CGI parameters as nginx sent them (`REQUEST_METHOD`, `DOCUMENT_URI`, `HTTP_*`, …).
    public let parameters: [String: String]
    /// The body, read up to the configured maximum.
    public let body: RequestBody

    /// Creates a request (used by tests to drive the pipeline without a socket).
    public init(parameters: [String: String], body: RequestBody) {
        self.parameters = parameters
        self.body = body
    }
}

/// A response to write back: status, headers and body bytes.
public struct FastCGIResponse: Sendable {
    /// The HTTP status code.
    public var status: Int
    /// Header names and values, written in order.
    public var headers: [(String, String)]
    /// The body bytes.
    public var body: [UInt8]

    /// Creates a response.
    public init(status: Int, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The CGI-style header block followed by the body.
    func serialized() -> [UInt8] {
        var head = "Status: \(status) \(Self.reasonPhrase(status))\r\n"
        for (name, value) in headers {
            head += "\(name): \(Self.sanitized(value))\r\n"
        }
        head += "Content-Length: \(body.count)\r\n\r\n"
        return Array(head.utf8) + body
    }

    private static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 302: return "Found"
        case 303: return "See Other"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 402: return "Payment Required"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 409: return "Conflict"
        case 413: return "Payload Too Large"
        case 415: return "Unsupported Media Type"
        case 422: return "Unprocessable Content"
        case 429: return "Too Many Requests"
        case 500: return "Internal Server Error"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        default: return "Status"
        }
    }

    /// Header values never carry CR or LF (no response splitting, whatever a handler put there).
    private static func sanitized(_ value: String) -> String {
        value.contains(where: { $0 == "\r" || $0 == "\n" })
            ? String(value.filter { $0 != "\r" && $0 != "\n" }) : value
    }
}

/// One worker's FastCGI request slot: accepts connections on the shared listener, reads, writes.
/// Not Sendable: it belongs to the thread that created it.
final class Exchange {
    private let request: UnsafeMutablePointer<FCGX_Request>

    init(listener: Listener) {
        request = .allocate(capacity: 1)
        FCGX_InitRequest(request, listener.descriptor, 0)
    }

    deinit {
        FCGX_Free(request, 1)
        request.deallocate()
    }

    /// Waits for the next request; false once the listener is shut down.
    func accept() -> Bool {
        FCGX_Accept_r(request) >= 0
    }

    /// Copies every parameter: libfcgi frees them in `FCGX_Finish_r`.
    func parameters() -> [String: String] {
        var result: [String: String] = [:]
        guard var cursor = request.pointee.envp else { return result }
        while let entry = cursor.pointee {
            let length = strlen(entry)
            entry.withMemoryRebound(to: UInt8.self, capacity: length) { start in
                let bytes = UnsafeBufferPointer(start: start, count: length)
                if let equals = bytes.firstIndex(of: UInt8(ascii: "=")) {
                    let name = String(decoding: UnsafeBufferPointer(rebasing: bytes[..<equals]), as: UTF8.self)
                    result[name] = String(
                        decoding: UnsafeBufferPointer(rebasing: bytes[(equals + 1)...]), as: UTF8.self)
                }
            }
            cursor += 1
        }
        return result
    }

    /// Reads exactly `CONTENT_LENGTH` bytes, or reports why it did not.
    func readBody(contentLength: String?, maximum: Int) -> RequestBody {
        guard let contentLength, !contentLength.isEmpty else { return .complete([]) }
        guard let declared = Int(contentLength), declared >= 0 else { return .malformed }
        guard declared <= maximum else { return .tooLarge(declaredLength: declared) }
        var body = [UInt8](repeating: 0, count: declared)
        var filled = 0
        while filled < declared {
            let read = body.withUnsafeMutableBytes { buffer -> Int32 in
                guard let base = buffer.baseAddress else { return -1 }
                return FCGX_GetStr(
                    base.advanced(by: filled).assumingMemoryBound(to: CChar.self),
                    Int32(declared - filled), request.pointee.in)
            }
            guard read > 0 else { return .malformed }
            filled += Int(read)
        }
        return .complete(body)
    }

    /// Writes the response; a peer that went away is not an error worth more than ignoring.
    func write(_ response: FastCGIResponse) {
        let bytes = response.serialized()
        bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) {
                _ = FCGX_PutStr($0.baseAddress, Int32($0.count), request.pointee.out)
            }
        }
    }

    /// Ends the request and closes its connection. When the request's input was read to its end
    /// (`inputRead`), nothing more will come from nginx and the socket is closed at once.
    /// Otherwise (a body refused unread) libfcgi's lingering close runs: our side shut down, then
    /// nginx's remaining bytes read and dropped until it closes (at most 2 s), so that nginx is
    /// not cut off while it still sends.
    func finish(inputRead: Bool) {
        if inputRead { _ = FCGX_Detach(request) }  // a detached request is closed without lingering
        FCGX_Finish_r(request)
        request.pointee.detached = 0  // the slot's next request starts attached, whatever libfcgi left
    }
}
