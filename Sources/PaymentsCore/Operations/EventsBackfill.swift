import Foundation
import Postgres
import Stripe

/// `payments events backfill --since T`: fetches the events Stripe recorded since `T` from the
/// Events API — the platform's, and each connected account's (with `Stripe-Account`) — and feeds
/// them through the same inbox as webhook deliveries, whose dedupe by event id makes it safe to
/// run at any time and any number of times. This is how the service catches up after an outage
/// longer than Stripe's retry window, or after deliveries failed on a misconfigured secret.
public enum EventsBackfill {
    /// What one endpoint's backfill did.
    public struct Tally: Equatable, Sendable {
        public var fetched = 0
        public var applied = 0
        public var duplicates = 0
        public var failed = 0
        /// Listed for one account but naming another (or none) as its `account`: not applied.
        public var foreign = 0
    }

    /// Backfills both endpoints; prints one line per endpoint; false when an event failed.
    public static func run(since: Int64, until: Int64?, environment: Environment) throws -> Bool {
        let connection = Connection(connectionString: try environment.required("DATABASE_URL"))
        StripeClient.initializeGlobalState()
        let stripe = try StripeClient(configuration: try ServerConfiguration.stripeConfiguration(environment))
        let inbox = WebhookInbox(
            connection: connection, audit: .system("payments events backfill"), followUps: stripe,
            payoutDelayDays: try MarketplaceConfiguration(environment: environment).payoutDelayDays)

        var platform = Tally()
        for payload in try fetch(.platform, account: nil, since: since, until: until, stripe: stripe) {
            apply(payload, endpoint: .platform, listedFor: nil, inbox: inbox, into: &platform)
        }
        var connect = Tally()
        for account in try ConnectedAccounts.active(on: connection) {
            // One account Stripe refuses (its access was revoked meanwhile) does not stop the others.
            do {
                for payload in try fetch(.connect, account: account, since: since, until: until, stripe: stripe) {
                    apply(payload, endpoint: .connect, listedFor: account, inbox: inbox, into: &connect)
                }
            } catch let error as StripeError where error.kind == .permission {
                // Revoked or deleted meanwhile: nothing to fetch for it; named, not a failure.
                printError("backfill: connect: \(account) skipped: \(OperatorMessage.line(for: error))")
            }
        }
        for (endpoint, tally) in [(WebhookEndpoint.platform, platform), (.connect, connect)] {
            print(
                "backfill: \(endpoint.rawValue): \(tally.fetched) fetched, \(tally.applied) applied, "
                    + "\(tally.duplicates) already stored, \(tally.failed) failed, "
                    + "\(tally.foreign) from another account skipped")
        }
        return platform.failed + connect.failed == 0
    }

    /// Every event of the types `endpoint` handles created in [since, until], oldest first, each
    /// as its own JSON document. The Events API lists newest first, a page of 100 at a time.
    static func fetch(
        _ endpoint: WebhookEndpoint, account: String?, since: Int64, until: Int64?, stripe: StripeClient
    ) throws -> [[UInt8]] {
        var created: [(String, StripeParameter)] = [("gte", .integer(since))]
        if let until { created.append(("lte", .integer(until))) }
        var query: [(String, StripeParameter)] = [
            ("limit", .integer(100)), ("created", .object(created)),
            ("types", .array(endpoint.handledEventTypes.map(StripeParameter.string))),
        ]
        var events: [[UInt8]] = []
        while true {
            let page = try stripe.getBytes("/v1/events", query: query, account: account)
            guard case .object(let list)? = JSONValue.parse(page), case .array(let items)? = list["data"] else {
                throw OperatorFailure("the Events API answered something other than a list of events")
            }
            events += items.map { JSONCoding.encode($0) }
            guard case .bool(true)? = list["has_more"], case .object(let last)? = items.last,
                case .string(let lastID)? = last["id"]
            else { break }
            query.removeAll { $0.0 == "starting_after" }
            query.append(("starting_after", .string(lastID)))
        }
        return events.reversed()
    }

    /// Feeds one fetched event to the inbox. An event listed for `account` (nil: the platform's)
    /// whose own `account` says otherwise is skipped and named: applying it would let whatever
    /// the listing got wrong decide which account's payment it touches.
    private static func apply(
        _ payload: [UInt8], endpoint: WebhookEndpoint, listedFor account: String?, inbox: WebhookInbox,
        into tally: inout Tally
    ) {
        tally.fetched += 1
        do {
            let event = try Event.decode(payload)
            guard event.account == account else {
                tally.foreign += 1
                printError(
                    "backfill: \(endpoint.rawValue): \(event.id) skipped: listed for \(account ?? "the platform") "
                        + "but its account is \(event.account ?? "none")")
                return
            }
            switch try inbox.receive(event, payload: payload, endpoint: endpoint) {
            case .duplicate: tally.duplicates += 1
            case .applied: tally.applied += 1
            }
        } catch {
            tally.failed += 1
        }
    }
}
