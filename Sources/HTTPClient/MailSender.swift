internal import CCurl
import Foundation

/// One message to hand to an SMTP server: the envelope (`MAIL FROM`, `RCPT TO`) and the bytes
/// of the message itself (RFC 5322 headers, a blank line, the body; lines end in CRLF).
public struct MailMessage: Sendable {
    /// The envelope sender, a bare address (`payments@example.com`).
    public var from: String
    /// The envelope recipients, bare addresses.
    public var recipients: [String]
    /// The message as sent after `DATA`. libcurl escapes lines that start with a dot.
    public var data: [UInt8]

    /// Creates a message.
    public init(from: String, recipients: [String], data: [UInt8]) {
        self.from = from
        self.recipients = recipients
        self.data = data
    }
}

/// How a mail exchange must protect itself.
public enum MailTransportSecurity: Sendable {
    /// `smtps://`, or `smtp://` with a required `STARTTLS`: the message (and any login in the
    /// URL) never crosses the network in clear text.
    case required
    /// A plain `smtp://` exchange: for a relay on loopback only (the caller decides).
    case none
}

extension HTTPClient {
    /// Sends one message to the SMTP server of `url` (`smtp://host:port`, `smtps://host`, with
    /// an optional `user:password@` login) and returns when the server accepted it (`250` after
    /// the data). A refusal at any step, a timeout or a dropped connection throws; the error's
    /// detail names libcurl's code and the server's last reply, never the URL or its login.
    public func send(_ message: MailMessage, url: String, security: MailTransportSecurity, timeout: Duration? = nil)
        throws(HTTPClientError)
    {
        curl_easy_reset(handle)
        let source = MailSource(bytes: message.data)
        var recipients: UnsafeMutablePointer<curl_slist>? = nil
        for recipient in message.recipients {
            recipients = curl_slist_append(recipients, "<\(recipient)>")
        }
        defer { curl_slist_free_all(recipients) }

        setCommonOptions(url: url, protocols: "smtp,smtps", timeout: timeout)
        if case .required = security {
            ccurl_setopt_long(handle, CURLOPT_USE_SSL, Int(CURLUSESSL_ALL.rawValue))
        }
        ccurl_setopt_string(handle, CURLOPT_MAIL_FROM, "<\(message.from)>")
        ccurl_setopt_slist(handle, CURLOPT_MAIL_RCPT, recipients)
        ccurl_setopt_long(handle, CURLOPT_UPLOAD, 1)
        ccurl_setopt_offset(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(message.data.count))
        ccurl_setopt_read_function(
            handle,
            { buffer, size, count, context in
                guard let buffer, let context else { return 0 }
                let source = Unmanaged<MailSource>.fromOpaque(context).takeUnretainedValue()
                return source.read(into: buffer, capacity: size * count)
            })
        ccurl_setopt_pointer(handle, CURLOPT_READDATA, Unmanaged.passUnretained(source).toOpaque())

        let code = withExtendedLifetime(source) { curl_easy_perform(handle) }
        guard code == CURLE_OK else {
            var reply = 0
            ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &reply)
            throw Self.error(for: code, reply: reply)
        }
    }
}

/// Feeds one message to libcurl's read callback, a chunk at a time.
private final class MailSource {
    private let bytes: [UInt8]
    private var offset = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    func read(into buffer: UnsafeMutablePointer<CChar>, capacity: Int) -> Int {
        let count = min(capacity, bytes.count - offset)
        guard count > 0 else { return 0 }
        bytes.withUnsafeBytes { source in
            guard let base = source.baseAddress else { return }
            UnsafeMutableRawPointer(buffer).copyMemory(from: base + offset, byteCount: count)
        }
        offset += count
        return count
    }
}
