import Foundation
import Postgres
import Stripe

/// The checks `payments doctor` runs; each returns its lines and never throws.
enum DoctorChecks {
    /// Clock differences with Stripe above this many seconds are worth a warning.
    static let clockSkewWarning: Double = 30

    /// PostgreSQL answers on `DATABASE_URL`, and the migrations of `MIGRATIONS_DIR` are all
    /// applied, unchanged.
    static func database(_ environment: Environment) -> [Doctor.Check] {
        do {
            let connection = Connection(connectionString: try environment.required("DATABASE_URL"))
            try connection.query("SELECT 1")
            let migrations = try Migration.load(from: environment.optional("MIGRATIONS_DIR") ?? "sql")
            let applied = try Migrator.applied(on: connection)
            let database = Doctor.Check(name: "database", verdict: .ok, detail: "PostgreSQL answers")
            do {
                let pending = try Migrator(migrations: migrations).pending(applied: applied)
                guard pending.isEmpty else {
                    let versions = pending.map(\.version).joined(separator: ", ")
                    return [
                        database,
                        Doctor.Check(
                            name: "migrations", verdict: .problem,
                            detail: "\(pending.count) pending (\(versions)): run `payments migrate`"),
                    ]
                }
                return [
                    database,
                    Doctor.Check(name: "migrations", verdict: .ok, detail: "\(applied.count) applied, none pending"),
                ]
            } catch {
                return [
                    database,
                    Doctor.Check(name: "migrations", verdict: .problem, detail: OperatorMessage.line(for: error)),
                ]
            }
        } catch {
            return [Doctor.Check(name: "database", verdict: .problem, detail: OperatorMessage.line(for: error))]
        }
    }

    /// Stripe answers `GET /v1/balance` with our key, and its `Date` is close to our clock
    /// (webhook signatures carry timestamps checked against `tolerance`).
    static func stripe(_ environment: Environment, tolerance: Int64?) -> [Doctor.Check] {
        let serverDate: Date?
        let configuration: StripeConfiguration
        do {
            configuration = try ServerConfiguration.stripeConfiguration(environment)
            StripeClient.initializeGlobalState()
            serverDate = try StripeClient(configuration: configuration).fetchServerDate()
        } catch {
            return [
                Doctor.Check(
                    name: "stripe", verdict: .problem, detail: "not reachable: \(OperatorMessage.line(for: error))")
            ]
        }
        let reachable = Doctor.Check(
            name: "stripe", verdict: .ok,
            detail: "\(configuration.apiBase) answers (\(configuration.isLiveMode ? "live" : "test") mode)")
        guard let serverDate else {
            return [
                reachable,
                Doctor.Check(name: "clock", verdict: .warning, detail: "Stripe sent no Date header to compare with"),
            ]
        }
        let skew = Date().timeIntervalSince(serverDate)
        let seconds = Int(abs(skew).rounded())
        let direction = skew > 0 ? "ahead of" : "behind"
        let limit = Double(tolerance ?? 300)
        let clock: Doctor.Check
        if abs(skew) > limit {
            clock = Doctor.Check(
                name: "clock", verdict: .problem,
                detail: "\(seconds) s \(direction) Stripe's, beyond the webhook tolerance of \(Int(limit)) s: fix NTP")
        } else if abs(skew) > clockSkewWarning {
            clock = Doctor.Check(
                name: "clock", verdict: .warning, detail: "\(seconds) s \(direction) Stripe's: check NTP")
        } else {
            clock = Doctor.Check(name: "clock", verdict: .ok, detail: "within \(seconds) s of Stripe's")
        }
        return [reachable, clock]
    }

    /// Both webhook endpoints as `payments stripe endpoints check` wants them.
    static func endpoints(_ environment: Environment) -> [Doctor.Check] {
        do {
            return try StripeEndpointsCheck.findings(environment: environment).map { finding in
                let name = "\(finding.spec.endpoint.rawValue) endpoint"
                guard !finding.problems.isEmpty else {
                    return Doctor.Check(name: name, verdict: .ok, detail: "\(finding.endpointID ?? "") as expected")
                }
                return Doctor.Check(name: name, verdict: .problem, detail: finding.problems.joined(separator: "; "))
            }
        } catch {
            return [
                Doctor.Check(
                    name: "endpoints", verdict: .problem, detail: "not checked: \(OperatorMessage.line(for: error))")
            ]
        }
    }

    /// Each lane's unix socket: a socket, with the configured mode and group, closed to others;
    /// or, when `serve` is not running here, a folder it can be created in.
    static func sockets(_ configuration: ServerConfiguration?) -> [Doctor.Check] {
        guard let configuration else {
            return [
                Doctor.Check(
                    name: "sockets", verdict: .warning, detail: "not checked: the configuration does not parse")
            ]
        }
        return [
            ("FCGI_SOCKET", configuration.socketAddress), ("FCGI_STRIPE_SOCKET", configuration.stripeSocketAddress),
        ]
        .map { name, address in
            Doctor.Check(
                name: name, verdict: socketProblem(address, configuration) == nil ? .ok : .problem,
                detail: socketProblem(address, configuration) ?? socketSummary(address, configuration))
        }
    }

    private static func socketProblem(_ address: String, _ configuration: ServerConfiguration) -> String? {
        guard address.hasPrefix("/") else { return nil }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: address) else {
            let folder = (address as NSString).deletingLastPathComponent
            return FileManager.default.isWritableFile(atPath: folder)
                ? nil : "\(address) does not exist and its folder \(folder) is missing or not writable"
        }
        guard attributes[.type] as? FileAttributeType == .typeSocket else { return "\(address) is not a socket" }
        let mode = (attributes[.posixPermissions] as? NSNumber)?.uint32Value ?? 0
        if mode & 0o007 != 0 {
            return "\(address) has mode \(octal(mode)): anyone on the host can connect (FastCGI has no authentication)"
        }
        if mode != configuration.socketMode {
            return "\(address) has mode \(octal(mode)), expected FCGI_SOCKET_MODE \(octal(configuration.socketMode))"
        }
        let group = (attributes[.groupOwnerAccountID] as? NSNumber)?.uint32Value
        if let expected = configuration.socketGroup, group != expected {
            return
                "\(address) belongs to group \(group.map(String.init) ?? "?"), expected FCGI_SOCKET_GROUP (\(expected))"
        }
        return nil
    }

    private static func socketSummary(_ address: String, _ configuration: ServerConfiguration) -> String {
        guard address.hasPrefix("/") else {
            return "\(address) is TCP: no file permissions; keep it on loopback or a private network"
        }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: address) else {
            return "\(address) does not exist yet (serve is not running here); its folder is writable"
        }
        let group = attributes[.groupOwnerAccountName] as? String ?? "?"
        return "\(address): mode \(octal(configuration.socketMode)), group \(group)"
    }

    private static func octal(_ mode: UInt32) -> String {
        "0" + String(mode, radix: 8)
    }
}
