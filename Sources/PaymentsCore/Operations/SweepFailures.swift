/// What a sweep could not do now: each item stays due for the next run, and the others go on,
/// but the failure is counted (`payments_sweep_failures_total`) and logged rather than dropped.
/// One per sweep process; used from one thread.
final class SweepFailures {
    /// Failures so far in this process.
    private(set) var count = 0
    private let logger: Logger

    /// Logs to `logger` (standard error for `payments sweep`).
    init(logger: Logger = Logger()) {
        self.logger = logger
    }

    /// Runs `body`; on an error counts and logs it (by type and in plain words, nothing secret)
    /// and returns nil.
    func attempt<T>(_ what: String, _ body: () throws -> T) -> T? {
        do {
            return try body()
        } catch {
            record(what, error)
            return nil
        }
    }

    /// Counts and logs one failure.
    func record(_ what: String, _ error: any Error) {
        count += 1
        logger.warning(
            "sweep step failed", [("step", .string(what)), ("error", .string(OperatorMessage.line(for: error)))])
    }
}
