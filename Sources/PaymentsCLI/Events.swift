import ArgumentParser
import PaymentsCore

/// `payments events list|replay`.
struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Inspect the webhook inbox; replay re-applies stored events idempotently; backfill fetches missed ones from Stripe.",
        subcommands: [List.self, Replay.self, Backfill.self])

    /// `payments events list [--status S] [--limit N]`.
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the newest stored events, one tab-separated line each.")

        @Option(help: "Only events in this state: \(EventsCommand.statuses.joined(separator: ", ")).")
        var status: String?

        @Option(help: "At most this many events (1 to 10000).")
        var limit: Int = 100

        func validate() throws {
            if let status, !EventsCommand.statuses.contains(status) {
                throw ValidationError("--status must be one of \(EventsCommand.statuses.joined(separator: ", "))")
            }
            guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be from 1 to 10000") }
        }

        func run() throws {
            try operate {
                try EventsCommand.list(status: status, limit: limit, environment: processEnvironment)
                return true
            }
        }
    }

    /// `payments events replay (--id EVT | --type TYPE [--since UNIX_SECONDS])`.
    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-apply stored events: one by id, or every event of a type since a time.",
            discussion: "Exits 1 when an event is missing or fails again.")

        @Option(help: "The event's id (evt_…).")
        var id: String?

        @Option(help: "Every stored event of this type…")
        var type: String?

        @Option(help: "…created at or after this Unix time (with --type).")
        var since: Int64?

        /// What the options select (validated: exactly one of --id, --type).
        var selection: EventsCommand.Selection? {
            if let id { return .id(id) }
            if let type { return .type(type, since: since ?? 0) }
            return nil
        }

        func validate() throws {
            guard (id == nil) != (type == nil) else { throw ValidationError("give either --id or --type") }
            if since != nil, type == nil { throw ValidationError("--since goes with --type") }
            if let since, since < 0 { throw ValidationError("--since must be a Unix time (seconds, ≥ 0)") }
        }

        func run() throws {
            guard let selection else { throw ValidationError("give either --id or --type") }
            try operate { try EventsCommand.replay(selection, environment: processEnvironment) }
        }
    }

    /// `payments events backfill --since UNIX_SECONDS [--until UNIX_SECONDS]`.
    struct Backfill: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch the events Stripe recorded in a time range and apply the ones not yet stored.",
            discussion: """
                Reads Stripe's Events API for the platform and for every connected account, only the
                event types the app handles, and feeds them through the webhook inbox: events already
                stored are skipped, so running it again changes nothing. Use it after an outage longer
                than Stripe's retry window, or after deliveries failed on a wrong signing secret.
                Exits 1 when an event fails to apply.
                """)

        @Option(help: "Events created at or after this Unix time.")
        var since: Int64

        @Option(help: "…and at or before this Unix time (default: now).")
        var until: Int64?

        func validate() throws {
            guard since >= 0 else { throw ValidationError("--since must be a Unix time (seconds, ≥ 0)") }
            if let until, until < since { throw ValidationError("--until must not be before --since") }
        }

        func run() throws {
            try operate { try EventsBackfill.run(since: since, until: until, environment: processEnvironment) }
        }
    }
}
