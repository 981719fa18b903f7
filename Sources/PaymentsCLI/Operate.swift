import ArgumentParser
import Foundation
import PaymentsCore

/// The process environment, read once per command, with the `*_FILE` secrets read in.
var processEnvironment: Environment {
    get throws { try Environment(resolvingSecretFiles: ProcessInfo.processInfo.environment) }
}

/// Runs a command's work: `false` or any error is exit status 1, with the error as one plain
/// line on stderr (`OperatorMessage`), never a stack trace.
func operate(_ work: () throws -> Bool) throws {
    let succeeded: Bool
    do {
        succeeded = try work()
    } catch {
        printError("payments: \(OperatorMessage.line(for: error))")
        throw ExitCode.failure
    }
    if !succeeded { throw ExitCode.failure }
}
