import FastCGI
import Foundation
import Postgres
import Stripe

/// An operator task that could not do its job, in one plain line (no key, no stack trace).
public struct OperatorFailure: Error, CustomStringConvertible {
    /// What went wrong and, where there is one, what to do about it.
    public let description: String

    /// A failure with its one-line explanation.
    public init(_ description: String) {
        self.description = description
    }
}

/// The one place an operator command's error becomes the line it prints on stderr.
public enum OperatorMessage {
    /// One line naming what failed: configuration, migration, socket, database or Stripe errors
    /// say so in their own words; nothing secret is part of any of them.
    public static func line(for error: any Error) -> String {
        // libpq's messages span lines ("…failed: …\n\tIs the server running…?"): one line each.
        text(for: error).split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .joined(separator: " ")
    }

    private static func text(for error: any Error) -> String {
        switch error {
        case let error as ConfigurationError: return error.description
        case let error as MigrationError: return error.description
        case let error as ListenerError: return error.description
        case let error as OperatorFailure: return error.description
        case let error as DatabaseError: return "database error: \(error.description): \(error.serverMessage)"
        case let error as StripeError: return "Stripe call failed: \(error.description)"
        default: return "\(error)"
        }
    }
}

/// One line on stderr (what an operator command says beside its report, or instead of it).
public func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
