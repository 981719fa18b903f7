import Foundation
import HTTPClient

/// Email addresses as the dispatcher accepts them: one `@`, no spaces, angle brackets or line
/// breaks (nothing that could end an SMTP command or start a header).
enum MailAddress {
    /// Whether `text` is a bare address we will put in an envelope and a header.
    static func isValid(_ text: String) -> Bool {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        return (3...254).contains(text.utf8.count) && parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".")
            && !parts[1].hasPrefix(".") && !parts[1].hasSuffix(".")
            && text.unicodeScalars.allSatisfy {
                $0.value > 0x20 && $0.value < 0x7F && !"<>()[],;:\"\\".unicodeScalars.contains($0)
            }
    }

    /// The address of `SMTP_FROM` (`address` or `Name <address>`); nil when malformed.
    static func sender(of from: String) -> String? {
        guard !from.contains(where: \.isNewline) else { return nil }
        var address = from
        if from.hasSuffix(">"), let open = from.lastIndex(of: "<") {
            address = String(from[from.index(after: open)..<from.index(before: from.endIndex)])
        }
        return isValid(address) ? address : nil
    }
}

/// The message of one email notification: RFC 5322 headers, a blank line and the plain-text
/// body in UTF-8, lines ending in CRLF. The `Message-ID` names the notification, so a mail
/// system that received a retried copy can tell it is the same message.
struct NotificationMail {
    let from: String
    let to: String
    let subject: String
    let body: String
    let notificationID: String
    let date: Date

    /// The bytes to send after `DATA`.
    var data: [UInt8] {
        let headers = [
            "From: \(from)",
            "To: <\(to)>",
            "Subject: \(Self.encodedHeader(subject))",
            "Date: \(Self.rfc5322(date))",
            "Message-ID: <\(notificationID).notification@\(Self.domain(of: MailAddress.sender(of: from) ?? to))>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "Auto-Submitted: auto-generated",
        ]
        let lines = body.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? String($0.dropLast()) : String($0)
        }
        return Array((headers + [""] + lines).joined(separator: "\r\n").utf8) + Array("\r\n".utf8)
    }

    /// The message as `HTTPClient.send` takes it.
    func message(sender: String) -> MailMessage {
        MailMessage(from: sender, recipients: [to], data: data)
    }

    /// ASCII as it is (line breaks flattened); anything else as one RFC 2047 encoded word.
    static func encodedHeader(_ text: String) -> String {
        let flat = String(text.map { $0.isNewline ? " " : $0 })
        guard flat.unicodeScalars.contains(where: { $0.value > 0x7E || $0.value < 0x20 }) else { return flat }
        return "=?UTF-8?B?\(Data(flat.utf8).base64EncodedString())?="
    }

    private static func domain(of address: String) -> String {
        address.split(separator: "@").last.map(String.init) ?? "localhost"
    }

    /// RFC 5322's date, in UTC (a formatter per message: `DateFormatter` is not Sendable).
    private static func rfc5322(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return formatter.string(from: date)
    }
}
