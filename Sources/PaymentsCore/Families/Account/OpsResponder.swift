/// Operations endpoints: liveness, readiness and metrics.
struct OpsResponder {
    /// Liveness answers the same bytes every time (it is polled often; nothing to encode).
    static let healthBody = Array(#"{"status":"ok"}"#.utf8)

    func addRoutes(to router: inout Router) {
        router.add("GET", "/api/health") { _, _ in
            Response(status: 200, headers: [("Content-Type", "application/json")], body: Self.healthBody)
        }
        router.add("GET", "/api/ready", ready)
        router.add("GET", "/metrics", metrics)
    }

    /// 200 when the database answers and every migration this binary knows is applied unchanged.
    private func ready(_ request: Request, _ context: WorkerContext) throws -> Response {
        let applied = try Migrator.applied(on: context.database)
        let migrator = Migrator(migrations: context.shared.migrations)
        let pending: [Migration]
        do {
            pending = try migrator.pending(applied: applied)
        } catch let error as MigrationError {
            context.shared.logger.error("schema check failed", [("reason", .string(error.description))])
            throw APIError(.schemaMismatch)
        }
        guard pending.isEmpty else {
            throw APIError(
                .migrationsPending,
                message: "\(pending.count) migration(s) are not applied yet; run `payments migrate`.")
        }
        struct Ready: Encodable {
            let status: String
            let migrations: Int
        }
        return .json(Ready(status: "ready", migrations: applied.count))
    }

    /// Prometheus text. nginx admits loopback clients only; the app checks again.
    private func metrics(_ request: Request, _ context: WorkerContext) throws -> Response {
        let address = request.remoteAddress
        guard address.hasPrefix("127.") || address == "::1" || address.hasPrefix("unix:") || address.isEmpty else {
            throw APIError.notFound
        }
        // The inbox backlog (by status and type; dead events included) is read at scrape time;
        // without a database the counters still render.
        let backlog =
            (try? context.database.query(
                """
                SELECT status, type, count(*)::int AS n FROM webhook_events
                WHERE status IN ('parked', 'failed', 'dead') GROUP BY status, type ORDER BY status, type
                """
            ).rows) ?? []
        let pool = context.shared.pool.statistics
        let reconcile = try Self.reconcileGauges(context)
        let gauges =
            try reconcile
            + backlog.map {
                (
                    "payments_webhook_backlog{status=\"\(try $0.decode("status", as: String.self))\","
                        + "type=\"\(try $0.decode("type", as: String.self))\"}",
                    try $0.decode("n", as: Int.self)
                )
            } + [
                ("payments_db_pool_size", pool.size), ("payments_db_pool_open", pool.open),
                ("payments_db_pool_in_use", pool.inUse), ("payments_db_pool_waiting", pool.waiting),
            ]
        let text = context.shared.metrics.render(gauges: gauges, instance: context.shared.configuration.instanceName)
        return .text(text, contentType: "text/plain; version=0.0.4")
    }

    /// The last `payments reconcile` run: when it finished and its drift by kind (none before the first run).
    private static func reconcileGauges(_ context: WorkerContext) throws -> [(String, Int)] {
        guard
            let run = try? context.database.query(
                """
                SELECT extract(epoch FROM finished_at)::bigint AS finished, drift_counts
                FROM reconcile_runs ORDER BY id DESC LIMIT 1
                """
            ).first
        else { return [] }
        let counts: JSONValue = try run.decode("drift_counts")
        return [("payments_reconcile_last_run_timestamp_seconds", try run.decode("finished", as: Int.self))]
            + DriftKind.allCases.map { kind in
                let count: Int
                if case .object(let fields) = counts, case .int(let n)? = fields[kind.rawValue] {
                    count = Int(n)
                } else {
                    count = 0
                }
                return ("payments_reconcile_drift{kind=\"\(kind.rawValue)\"}", count)
            }
    }
}
