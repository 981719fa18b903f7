import Foundation
import Postgres
import Stripe

/// Mirrors a Stripe Account onto its profile — the one place `charges_enabled`,
/// `payouts_enabled`, `details_submitted`, the requirements, the capabilities and `disabled_reason` are written
/// from Stripe's view, by the onboarding return and by `account.updated`. Events are applied in
/// the order Stripe produced them (`account_event_created`), so an older one never overwrites a
/// newer one; a change of `charges_enabled` is audited.
enum AccountMirror {
    /// What a sync found.
    enum Result {
        /// No profile has this account (or not the expected one).
        case unknownAccount
        /// The profile already held a newer view.
        case stale
        /// Written; `chargesChanged` says whether the seller can now (or no longer) be paid.
        case synced(profileID: String, chargesChanged: Bool)
    }

    /// Writes `account`. `eventCreated` is the event's `created` (Stripe's clock) for webhook
    /// views; a view just retrieved from the API passes nil: it is current, is written, and
    /// leaves the ordering watermark alone (our clock is not Stripe's). `profileID` restricts
    /// the write to that profile.
    static func sync(
        _ account: Account, eventCreated: Int64?, profileID: String? = nil, operation: String,
        metadata: [String: JSONValue] = [:], audit: AuditContext, on connection: some SQLExecutor
    ) throws -> Result {
        guard
            let before = try connection.query(
                """
                SELECT id::text AS id, charges_enabled FROM profiles
                WHERE stripe_account_id = \(account.id) AND (\(profileID)::uuid IS NULL OR id = \(profileID)::uuid)
                FOR UPDATE
                """
            ).first
        else { return .unknownAccount }
        let id: String = try before.decode("id")
        func json(_ value: JSONValue) -> String { String(decoding: JSONCoding.encode(value), as: UTF8.self) }
        let due = json(.array((account.requirements?.currentlyDue ?? []).map(JSONValue.string)))
        let pastDue = json(.array((account.requirements?.pastDue ?? []).map(JSONValue.string)))
        let capabilities = json(.object((account.capabilities ?? [:]).mapValues(JSONValue.string)))
        guard
            try connection.query(
                """
                UPDATE profiles SET charges_enabled = \(account.chargesEnabled), payouts_enabled = \(account.payoutsEnabled),
                       details_submitted = \(account.detailsSubmitted), requirements_due = \(due)::jsonb,
                       requirements_past_due = \(pastDue)::jsonb, capabilities = \(capabilities)::jsonb,
                       disabled_reason = \(account.requirements?.disabledReason), account_synced_at = now(),
                       account_event_created = COALESCE(\(eventCreated)::bigint, account_event_created)
                WHERE id = \(id)::uuid AND account_event_created <= COALESCE(\(eventCreated)::bigint, account_event_created)
                RETURNING id
                """
            ).first != nil
        else { return .stale }
        let wasEnabled: Bool = try before.decode("charges_enabled")
        guard wasEnabled != account.chargesEnabled else { return .synced(profileID: id, chargesChanged: false) }
        try AuditLog.record(
            AuditEntry(
                operation: operation, entityType: "profile", entityID: id,
                oldValues: ["charges_enabled": .bool(wasEnabled)],
                newValues: ["charges_enabled": .bool(account.chargesEnabled)], metadata: metadata),
            context: audit, on: connection)
        return .synced(profileID: id, chargesChanged: true)
    }
}
