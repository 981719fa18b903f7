import Foundation
import HTTPClient
import Postgres

/// The outbox's dispatcher (`payments sweep`'s `deliver_notifications` task): queues each new
/// notification on every configured channel, then delivers what is due, one delivery at a time.
///
/// At most once per channel once the receiver acknowledged (a 2xx answer, SMTP's 250): a
/// delivered row is never claimed again. A claim is one statement (`FOR UPDATE SKIP LOCKED`)
/// that counts the attempt and moves `next_attempt_at` past the delivery's timeout — a lease —
/// so sweepers running at the same time never deliver the same row at once; the outcome is
/// recorded only while the claim is still ours (same attempt count). No transaction is open
/// while a receiver answers. A sweeper killed mid-delivery leaves the row due again after the
/// lease: that one delivery may then arrive twice, which the receiver's dedupe on the event id
/// (or the Message-ID) absorbs.
struct NotificationDispatcher {
    let connection: any SQLExecutor
    let settings: NotificationSettings
    let client: HTTPClient
    var logger = Logger()

    /// What one attempt came to.
    enum Attempt: Equatable {
        case delivered
        /// Nothing to deliver to (the profile has no email address any more).
        case skipped
        /// Failed; `isFinal` when no retry can succeed (no template, a malformed address).
        case failed(String, isFinal: Bool)
    }

    /// One due delivery, claimed, with what it delivers.
    struct Claim {
        let id: Int64
        let notificationID: String
        let channel: NotificationChannel
        let attempts: Int
        let kind: String
        let payload: JSONValue
        let created: Int64
        let profileID: String
        let email: String?
    }

    /// A dispatcher with its own HTTP client, bounded by `settings.timeout` (connect ≤ 5 s).
    init(connection: any SQLExecutor, settings: NotificationSettings) throws {
        self.connection = connection
        self.settings = settings
        client = try HTTPClient(
            configuration: HTTPClientConfiguration(
                connectTimeout: min(.seconds(5), settings.timeout), totalTimeout: settings.timeout))
    }

    /// Queues, then delivers each channel's due rows (at most `batchSize`, and for at most
    /// `channelBudget` per channel, so one slow receiver cannot hold the whole sweep); returns
    /// how many were delivered.
    func run(channelBudget: Duration = .seconds(25)) throws -> Int {
        var delivered = 0
        for channel in settings.channels {
            try enqueue(channel)
            let started = ContinuousClock.now
            for _ in 0..<settings.batchSize {
                guard ContinuousClock.now - started < channelBudget, let claim = try claim(channel) else { break }
                let attempt = deliver(claim)
                if case .failed(let reason, _) = attempt {
                    logger.warning(
                        "notification delivery failed",
                        [
                            ("channel", .string(channel.rawValue)), ("notification_id", .string(claim.notificationID)),
                            ("attempt", .int(claim.attempts)), ("error", .string(reason)),
                        ])
                }
                if try record(attempt, of: claim) == .delivered { delivered += 1 }
            }
        }
        return delivered
    }

    /// Gives every recent notification without a row of `channel` one: `pending`, or `skipped`
    /// for an email to a profile without an address.
    func enqueue(_ channel: NotificationChannel) throws {
        let needsAddress = channel == .email
        try connection.withTransaction { connection in
            let states = try connection.query(
                """
                INSERT INTO notification_deliveries (notification_id, channel, state, next_attempt_at)
                SELECT n.id, \(channel.rawValue), s.state, CASE WHEN s.state = 'pending' THEN now() END
                FROM notifications n JOIN profiles p ON p.id = n.profile_id,
                     LATERAL (SELECT CASE WHEN \(needsAddress)::boolean AND coalesce(p.email, '') = '' THEN 'skipped'
                                          ELSE 'pending' END AS state) s
                WHERE n.created_at > now() - make_interval(hours => \(settings.maxAgeHours))
                  AND NOT EXISTS (SELECT 1 FROM notification_deliveries d
                                  WHERE d.notification_id = n.id AND d.channel = \(channel.rawValue))
                ON CONFLICT (notification_id, channel) DO NOTHING
                RETURNING state
                """
            ).rows
            let skipped = try states.filter { try $0.decode("state", as: String.self) == "skipped" }.count
            try Self.count(channel, "skipped", by: skipped, on: connection)
        }
    }

    /// Claims the channel's next due delivery (nil: none due), counting the attempt and leasing
    /// the row for the delivery's timeout and a margin.
    func claim(_ channel: NotificationChannel) throws -> Claim? {
        let lease = Int(settings.timeout.components.seconds) + 30
        guard
            let row = try connection.query(
                """
                WITH next AS (
                    SELECT id FROM notification_deliveries
                    WHERE state = 'pending' AND channel = \(channel.rawValue) AND next_attempt_at <= now()
                    ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED),
                claimed AS (
                    UPDATE notification_deliveries d
                    SET attempts = d.attempts + 1, last_attempt_at = now(),
                        next_attempt_at = now() + make_interval(secs => \(lease))
                    FROM next WHERE d.id = next.id
                    RETURNING d.id, d.notification_id, d.attempts)
                SELECT c.id, c.notification_id::text AS notification_id, c.attempts, n.kind,
                       n.payload::text AS payload, extract(epoch FROM n.created_at)::bigint AS created,
                       n.profile_id::text AS profile_id, p.email
                FROM claimed c JOIN notifications n ON n.id = c.notification_id JOIN profiles p ON p.id = n.profile_id
                """
            ).first
        else { return nil }
        return Claim(
            id: try row.decode("id"), notificationID: try row.decode("notification_id"), channel: channel,
            attempts: try row.decode("attempts"), kind: try row.decode("kind"),
            payload: try row.decodeIfPresent("payload") ?? .object([:]), created: try row.decode("created"),
            profileID: try row.decode("profile_id"), email: try row.decodeIfPresent("email"))
    }

    /// Delivers one claim on its channel; never throws (every failure is an outcome to record).
    func deliver(_ claim: Claim) -> Attempt {
        switch claim.channel {
        case .webhook:
            guard let webhook = settings.webhook else { return .failed("the webhook channel is off", isFinal: false) }
            return OutboundWebhook(webhook: webhook, client: client, timeout: settings.timeout).deliver(claim)
        case .email:
            guard let mail = settings.mail else { return .failed("the email channel is off", isFinal: false) }
            return sendMail(claim, mail)
        }
    }

    private func sendMail(_ claim: Claim, _ mail: NotificationSettings.Mail) -> Attempt {
        guard let kind = NotificationKind(rawValue: claim.kind) else {
            return .failed("no email template for the kind \(claim.kind)", isFinal: true)
        }
        guard let email = claim.email, !email.isEmpty else { return .skipped }
        guard MailAddress.isValid(email) else {
            return .failed("the profile's email address is malformed", isFinal: true)
        }
        guard case .object(let payload) = claim.payload else {
            return .failed("the notification's payload is not an object", isFinal: true)
        }
        let text = MailTemplate.of(kind).rendered(payload: payload)
        let message = NotificationMail(
            from: mail.fromHeader, to: email, subject: text.subject, body: text.body,
            notificationID: claim.notificationID, date: Date())
        do {
            try client.send(message.message(sender: mail.sender), url: mail.url, security: mail.security)
            return .delivered
        } catch {
            return .failed(error.description, isFinal: false)
        }
    }

    /// Records an attempt's outcome while the claim is still ours; returns it (nil: the lease
    /// ran out and another sweeper took the row over, which then records its own outcome).
    @discardableResult
    func record(_ attempt: Attempt, of claim: Claim) throws -> Attempt? {
        try connection.withTransaction { connection in
            let owned: SQLQuery = "id = \(claim.id) AND attempts = \(claim.attempts) AND state = 'pending'"
            switch attempt {
            case .delivered:
                let changed = try connection.query(
                    """
                    UPDATE notification_deliveries
                    SET state = 'delivered', delivered_at = now(), next_attempt_at = NULL, last_error = NULL
                    WHERE \(sql: owned)
                    """
                ).affectedRows
                guard changed == 1 else { return nil }
                try connection.query(
                    "UPDATE notifications SET delivered_at = coalesce(delivered_at, now()) WHERE id = \(claim.notificationID)::uuid"
                )
                try Self.count(claim.channel, "delivered", on: connection)
            case .skipped:
                let changed = try connection.query(
                    "UPDATE notification_deliveries SET state = 'skipped', next_attempt_at = NULL WHERE \(sql: owned)"
                ).affectedRows
                guard changed == 1 else { return nil }
                try Self.count(claim.channel, "skipped", on: connection)
            case .failed(let reason, let isFinal):
                let dies = isFinal || claim.attempts >= settings.maxAttempts
                let delay = settings.backoffSeconds(afterAttempts: claim.attempts)
                let changed = try connection.query(
                    """
                    UPDATE notification_deliveries
                    SET last_error = \(String(reason.prefix(500))),
                        state = CASE WHEN \(dies)::boolean THEN 'dead' ELSE 'pending' END,
                        next_attempt_at = CASE WHEN \(dies)::boolean THEN NULL ELSE now() + make_interval(secs => \(delay)) END
                    WHERE \(sql: owned)
                    """
                ).affectedRows
                guard changed == 1 else { return nil }
                try Self.count(claim.channel, "failed", on: connection)
                if dies { try Self.count(claim.channel, "dead", on: connection) }
            }
            return attempt
        }
    }

    /// Adds to `payments_notification_deliveries_total{channel,outcome}`.
    static func count(
        _ channel: NotificationChannel, _ outcome: String, by amount: Int = 1, on connection: some SQLExecutor
    )
        throws
    {
        guard amount > 0 else { return }
        try connection.query(
            """
            UPDATE notification_delivery_totals SET total = total + \(amount)
            WHERE channel = \(channel.rawValue) AND outcome = \(outcome)
            """)
    }
}
