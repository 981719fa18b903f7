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
        let shared = context.shared
        // The database's families (backlog, money at risk, sweeps) are read at scrape time;
        // without a database the process's own metrics still render, and the failure is counted.
        var scraped: [ScrapedFamily]
        do {
            scraped = try ScrapeQueries.families(on: context.database)
        } catch {
            shared.metrics.increment("payments_metrics_database_errors_total")
            shared.logger.warning(
                "metrics: database families unavailable", [("request_id", .string(request.requestID))])
            scraped = []
        }
        let pool = shared.pool.statistics
        scraped += [
            ScrapedFamily(name: "payments_db_pool_size", type: .gauge, samples: [("", Double(pool.size))]),
            ScrapedFamily(name: "payments_db_pool_open", type: .gauge, samples: [("", Double(pool.open))]),
            ScrapedFamily(name: "payments_db_pool_in_use", type: .gauge, samples: [("", Double(pool.inUse))]),
            ScrapedFamily(name: "payments_db_pool_waiting", type: .gauge, samples: [("", Double(pool.waiting))]),
        ]
        scraped += shared.metrics.laneFamilies(workers: [
            (LaneKind.core.rawValue, shared.configuration.workers),
            (LaneKind.stripe.rawValue, shared.configuration.stripeWorkers),
        ])
        let text = shared.metrics.render(scraped: scraped, instance: shared.configuration.instanceName)
        return .text(text, contentType: "text/plain; version=0.0.4")
    }

}
