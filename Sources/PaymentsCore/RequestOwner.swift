import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Names the process running a request (`HOST:PID:START`), so that a retry can tell an attempt
/// that is still running from one whose process died (`kill -9`, a crash) and take it over at
/// once instead of waiting for its lease to run out. START, the process's start time in clock
/// ticks since boot, tells a pid that was reused apart from the original.
enum RequestOwner {
    /// This process.
    static let current: String = "\(host):\(getpid()):\(startTime(of: getpid()) ?? "0")"

    private static let host = ProcessInfo.processInfo.hostName

    /// True when `owner` names a process on this host that no longer runs. Owners on other
    /// hosts cannot be checked from here: their leases decide.
    static func isGone(_ owner: String?) -> Bool {
        guard let owner else { return false }
        let parts = owner.split(separator: ":")
        guard parts.count >= 3, parts.dropLast(2).joined(separator: ":") == host,
              let pid = Int32(parts[parts.count - 2]) else { return false }
        if pid == getpid() { return false }
        guard kill(pid, 0) == 0 || errno == EPERM else { return true }
        return startTime(of: pid).map { $0 != parts[parts.count - 1] } ?? true
    }

    /// Field 22 of `/proc/PID/stat` (after the parenthesised command name, which may hold spaces).
    private static func startTime(of pid: Int32) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? String(fields[19]) : nil
    }
}
