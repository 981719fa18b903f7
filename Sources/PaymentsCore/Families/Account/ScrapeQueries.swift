import Postgres

/// The metric families read from the database at scrape time: the webhook backlog, money at
/// risk, notification deliveries and the sweeper's runs (`payments sweep` is another process; it records each run in
/// `sweep_runs`). Each reads a view of sql/0012 over a partial index, so a scrape stays cheap
/// however large the tables grow. The values are the cluster's, the same from every process:
/// aggregate them with `max`, not `sum`.
enum ScrapeQueries {
    /// Every database family; throws when the database does not answer.
    static func families(on database: some SQLExecutor) throws -> [ScrapedFamily] {
        try backlog(on: database) + refusals(on: database) + moneyAtRisk(on: database) + sweeps(on: database)
            + reconciliation(on: database) + notificationDeliveries(on: database)
    }

    /// `payments_webhook_events_refused{endpoint,reason="account_mismatch"}`: the events refused
    /// because their `account` is not the one that owns their object, however they were applied —
    /// a live delivery, the sweeper's retry, an admin's or the CLI's replay, a backfill — as the
    /// inbox stored its decision (`ignored`, `last_error` account_mismatch; sql/0021's view over a
    /// partial index). Both endpoints always present.
    static func refusals(on database: some SQLExecutor) throws -> [ScrapedFamily] {
        var counts: [String: Int] = [:]
        for row in try database.query("SELECT endpoint, events FROM metrics_webhook_refused").rows {
            counts[try row.decode("endpoint", as: String.self)] = try row.decode("events", as: Int.self)
        }
        return [
            ScrapedFamily(
                name: "payments_webhook_events_refused", type: .gauge,
                samples: WebhookEndpoint.allCases.map {
                    ("endpoint=\"\($0.rawValue)\",reason=\"account_mismatch\"", Double(counts[$0.rawValue] ?? 0))
                })
        ]
    }

    /// `payments_webhook_backlog{status,type}`: parked, failed and dead events.
    static func backlog(on database: some SQLExecutor) throws -> [ScrapedFamily] {
        let rows = try database.query("SELECT status, type, events FROM metrics_webhook_backlog ORDER BY status, type")
            .rows
        return [
            ScrapedFamily(
                name: "payments_webhook_backlog", type: .gauge,
                samples: try rows.map {
                    (
                        "status=\"\(try $0.decode("status", as: String.self))\","
                            + "type=\"\(Self.escaped(try $0.decode("type", as: String.self)))\"",
                        Double(try $0.decode("events", as: Int.self))
                    )
                })
        ]
    }

    /// For each kind of money at risk and each charge model, the count (always present, 0 when
    /// none) and the amount per currency in the currency's minor unit (cents):
    /// `payments_authorizations_expiring`, `payments_disputes_open`, `payments_refunds_pending`
    /// and their `_amount_minor{currency}`, all by `charge_model`.
    static func moneyAtRisk(on database: some SQLExecutor) throws -> [ScrapedFamily] {
        let rows = try database.query(
            "SELECT kind, charge_model, currency, items, amount FROM metrics_money_at_risk ORDER BY kind, charge_model, currency"
        ).rows
        let decoded = try rows.map {
            (
                kind: try $0.decode("kind", as: String.self), model: try $0.decode("charge_model", as: String.self),
                currency: try $0.decode("currency", as: String.self), items: try $0.decode("items", as: Int.self),
                amount: try $0.decode("amount", as: Int.self)
            )
        }
        return ["authorizations_expiring", "disputes_open", "refunds_pending"].flatMap { kind in
            let ofKind = decoded.filter { $0.kind == kind }
            return [
                ScrapedFamily(
                    name: "payments_\(kind)", type: .gauge,
                    samples: ChargeModel.allCases.map { model in
                        (
                            "charge_model=\"\(model.rawValue)\"",
                            Double(ofKind.filter { $0.model == model.rawValue }.reduce(0) { $0 + $1.items })
                        )
                    }),
                ScrapedFamily(
                    name: "payments_\(kind)_amount_minor", type: .gauge,
                    samples: ofKind.map {
                        (
                            "charge_model=\"\(Self.escaped($0.model))\",currency=\"\(Self.escaped($0.currency))\"",
                            Double($0.amount)
                        )
                    }),
            ]
        }
    }

    /// The sweeper's runs, per task, from `sweep_runs`.
    static func sweeps(on database: some SQLExecutor) throws -> [ScrapedFamily] {
        let rows = try database.query(
            """
            SELECT task, runs, failures, rows_touched, last_rows, last_failures,
                   extract(epoch FROM last_finished_at)::float8 AS finished,
                   extract(epoch FROM last_finished_at - last_started_at)::float8 AS duration,
                   extract(epoch FROM last_success_at)::float8 AS succeeded
            FROM sweep_runs ORDER BY task
            """
        ).rows
        func family(_ name: String, _ type: ScrapedFamily.Kind, _ value: (Row) throws -> Double?) throws
            -> ScrapedFamily
        {
            ScrapedFamily(
                name: name, type: type,
                samples: try rows.compactMap { row in
                    guard let number = try value(row) else { return nil }
                    return ("task=\"\(Self.escaped(try row.decode("task", as: String.self)))\"", number)
                })
        }
        return [
            try family("payments_sweep_runs_total", .counter) { Double(try $0.decode("runs", as: Int.self)) },
            try family("payments_sweep_failures_total", .counter) { Double(try $0.decode("failures", as: Int.self)) },
            try family("payments_sweep_rows_total", .counter) { Double(try $0.decode("rows_touched", as: Int.self)) },
            try family("payments_sweep_last_rows", .gauge) { Double(try $0.decode("last_rows", as: Int.self)) },
            try family("payments_sweep_last_failures", .gauge) {
                Double(try $0.decode("last_failures", as: Int.self))
            },
            try family("payments_sweep_last_run_timestamp_seconds", .gauge) {
                try $0.decode("finished", as: Double.self)
            },
            try family("payments_sweep_last_duration_seconds", .gauge) { try $0.decode("duration", as: Double.self) },
            try family("payments_sweep_last_success_timestamp_seconds", .gauge) {
                try $0.decodeIfPresent("succeeded", as: Double.self)
            },
        ]
    }

    /// A label value as the exposition format wants it.
    static func escaped(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    /// The last `payments reconcile` run (`reconcile_runs`): when it finished (0 before the first
    /// run) and its drift by kind (every kind always present, 0 when none).
    static func reconciliation(on database: some SQLExecutor) throws -> [ScrapedFamily] {
        let run = try database.query(
            """
            SELECT extract(epoch FROM finished_at)::bigint AS finished, drift_counts
            FROM reconcile_runs ORDER BY id DESC LIMIT 1
            """
        ).first
        let counts: JSONValue = try run?.decode("drift_counts") ?? .object([:])
        let finished: Int64 = try run?.decode("finished") ?? 0
        return [
            ScrapedFamily(
                name: "payments_reconcile_last_run_timestamp_seconds", type: .gauge,
                samples: [("", Double(finished))]),
            ScrapedFamily(
                name: "payments_reconcile_drift", type: .gauge,
                samples: DriftKind.allCases.map { kind in
                    guard case .object(let fields) = counts, case .int(let n)? = fields[kind.rawValue] else {
                        return ("kind=\"\(kind.rawValue)\"", 0)
                    }
                    return ("kind=\"\(kind.rawValue)\"", Double(n))
                }),
        ]
    }

    /// The notification dispatcher's work (`payments sweep` records it): deliveries by channel
    /// and outcome (`notification_delivery_totals`, every pair always present), and the pending
    /// and dead deliveries per channel (through the partial index of the open ones).
    static func notificationDeliveries(on database: some SQLExecutor) throws -> [ScrapedFamily] {
        let totals = try database.query(
            "SELECT channel, outcome, total FROM notification_delivery_totals ORDER BY channel, outcome"
        ).rows
        let open = try database.query(
            """
            SELECT state, channel, count(*) AS deliveries FROM notification_deliveries
            WHERE state IN ('pending', 'dead') GROUP BY state, channel
            """
        ).rows
        var counts: [String: Int] = [:]
        for row in open {
            counts[try row.decode("state", as: String.self) + "/" + (try row.decode("channel", as: String.self))] =
                try row.decode("deliveries", as: Int.self)
        }
        func gauge(_ state: String) -> ScrapedFamily {
            ScrapedFamily(
                name: "payments_notifications_\(state)", type: .gauge,
                samples: NotificationChannel.allCases.map {
                    ("channel=\"\($0.rawValue)\"", Double(counts["\(state)/\($0.rawValue)"] ?? 0))
                })
        }
        return [
            ScrapedFamily(
                name: "payments_notification_deliveries_total", type: .counter,
                samples: try totals.map {
                    (
                        "channel=\"\(Self.escaped(try $0.decode("channel", as: String.self)))\","
                            + "outcome=\"\(Self.escaped(try $0.decode("outcome", as: String.self)))\"",
                        Double(try $0.decode("total", as: Int.self))
                    )
                }),
            gauge("pending"), gauge("dead"),
        ]
    }
}
