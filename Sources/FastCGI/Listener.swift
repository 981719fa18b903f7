#if canImport(Glibc)
    import Glibc
#endif

/// Why the listening socket could not be opened.
public struct ListenerError: Error, CustomStringConvertible {
    /// A one-line explanation naming the address.
    public let description: String
}

/// The listening socket, created, bound and chmod-ed by us rather than by `FCGX_OpenSocket`
/// (which silently steals a live instance's socket, exits on bind failure and ignores the mode).
///
/// `address` is a unix socket path, or `HOST:PORT` for TCP on an IPv4 address.
public final class Listener: Sendable {
    /// The listening file descriptor, handed to libfcgi.
    public let descriptor: Int32
    /// The unix socket path we created, removed again when we close.
    private let socketPath: String?

    /// Opens the socket, refusing (with a clear message) when another live process listens on it.
    /// A unix socket gets `mode` and, when given, the group `group` (nginx's workers' group, so
    /// that `0660` lets them in and nobody else).
    public init(address: String, mode: mode_t, group: gid_t? = nil, backlog: Int32 = 1024) throws {
        if let (host, port) = Self.tcpAddress(address) {
            descriptor = try Self.openTCP(host: host, port: port, backlog: backlog)
            socketPath = nil
        } else {
            descriptor = try Self.openUnix(path: address, mode: mode, group: group, backlog: backlog)
            socketPath = address
        }
    }

    /// Stops accepting: blocked `accept` calls in every worker return with an error.
    public func shutdown() {
        _ = Glibc.shutdown(descriptor, Int32(SHUT_RDWR))
    }

    deinit {
        close(descriptor)
        if let socketPath { unlink(socketPath) }
    }

    private static func tcpAddress(_ address: String) -> (String, UInt16)? {
        guard !address.hasPrefix("/"), let colon = address.lastIndex(of: ":"),
            let port = UInt16(address[address.index(after: colon)...])
        else { return nil }
        return (String(address[..<colon]), port)
    }

    private static func openUnix(path: String, mode: mode_t, group: gid_t?, backlog: Int32) throws -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw ListenerError(description: "FCGI_SOCKET path is too long for a unix socket: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        try removeStaleSocket(at: path, address: address)

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ListenerError(description: "socket() failed: \(errnoText())") }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            let reason = errnoText()
            close(fd)
            throw ListenerError(description: "cannot bind FCGI_SOCKET \(path): \(reason)")
        }
        // The group before the mode, and both before `listen`: no one outside it ever connects.
        guard group.map({ chown(path, uid_t.max, $0) == 0 }) ?? true, chmod(path, mode) == 0, listen(fd, backlog) == 0
        else {
            let reason = errnoText()
            close(fd)
            unlink(path)
            throw ListenerError(description: "cannot prepare FCGI_SOCKET \(path): \(reason)")
        }
        return fd
    }

    /// A socket file nobody answers on is left over from a crash and may be replaced;
    /// one that accepts a connection belongs to a live instance and must not be touched.
    private static func removeStaleSocket(at path: String, address: sockaddr_un) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw ListenerError(description: "FCGI_SOCKET \(path) exists and is not a socket; refusing to replace it")
        }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { throw ListenerError(description: "socket() failed: \(errnoText())") }
        defer { close(probe) }
        var target = address
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected == 0 || errno == EAGAIN {
            throw ListenerError(
                description: "another instance is already listening on FCGI_SOCKET \(path); refusing to start")
        }
        unlink(path)
    }

    private static func openTCP(host: String, port: UInt16, backlog: Int32) throws -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw ListenerError(description: "FCGI_SOCKET host is not an IPv4 address: \(host)")
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ListenerError(description: "socket() failed: \(errnoText())") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, backlog) == 0 else {
            let reason = errnoText()
            close(fd)
            throw ListenerError(description: "cannot listen on FCGI_SOCKET \(host):\(port): \(reason)")
        }
        return fd
    }
}

func errnoText() -> String {
    String(cString: strerror(errno))
}
