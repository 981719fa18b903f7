import Cryptography
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Names the request running a piece of work that can outlive it (an `Idempotency-Key`, a
/// payment's create attempt): `HOST:PID:START:TOKEN`. A retry can then tell an attempt that is
/// still running from one whose process died (`kill -9`, a crash) and take it over at once,
/// instead of waiting for its lease to run out. HOST includes the PID namespace, so containers
/// that share a host name are told apart; START, the process's start time in clock ticks since
/// boot, tells a reused pid apart; TOKEN, fresh for every claim, makes each claim a
/// compare-and-set that only one of two racing retries can win.
enum RequestOwner {
    /// A new owner name for one claim by this process.
    static func make() -> String {
        "\(process):\(Hex.encode(Digest.randomBytes(8)))"
    }

    /// `HOST:PID:START` of this process.
    private static let process: String = "\(host):\(getpid()):\(startTime(of: getpid()) ?? "0")"

    private static let host: String = {
        let namespace =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid"))
            .map { $0.filter(\.isNumber) } ?? ""
        return "\(ProcessInfo.processInfo.hostName)#\(namespace)"
    }()

    /// True when `owner` names a process on this host (and PID namespace) that no longer runs.
    /// Owners elsewhere cannot be checked from here: their leases decide.
    static func isGone(_ owner: String?) -> Bool {
        guard let owner else { return false }
        let parts = owner.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts.dropLast(3).joined(separator: ":") == host,
            let pid = Int32(parts[parts.count - 3])
        else { return false }
        guard kill(pid, 0) == 0 || errno == EPERM else { return true }
        return startTime(of: pid).map { $0 != parts[parts.count - 2] } ?? true
    }

    /// Field 22 of `/proc/PID/stat` (after the parenthesised command name, which may hold spaces).
    private static func startTime(of pid: Int32) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? String(fields[19]) : nil
    }
}
