import Foundation
import Postgres
import Stripe

/// Connected accounts, as the Connect webhook reports them.
extension WebhookEffects {
    func accountUpdated(_ account: Account) throws -> EffectOutcome {
        guard let before = try connection.query("""
            SELECT id, charges_enabled FROM profiles WHERE stripe_account_id = \(account.id) FOR UPDATE
            """).first, let profileID = before["id"] else { return .parked }
        let due = String(decoding: JSONCoding.encode((account.requirements?.currentlyDue ?? []).map(JSONValue.string)), as: UTF8.self)
        let changed = try connection.query("""
            UPDATE profiles SET charges_enabled = \(account.chargesEnabled), payouts_enabled = \(account.payoutsEnabled),
                   details_submitted = \(account.detailsSubmitted), requirements_due = \(due)::jsonb,
                   disabled_reason = \(account.requirements?.disabledReason), account_synced_at = now(),
                   account_event_created = \(event.created)
            WHERE id = \(profileID)::uuid AND account_event_created <= \(event.created)
            RETURNING charges_enabled
            """).first
        guard let changed else { return .processed }
        if changed.bool("charges_enabled") != before.bool("charges_enabled") {
            try AuditLog.record(AuditEntry(operation: "account.updated", entityType: "profile", entityID: profileID,
                                           oldValues: ["charges_enabled": .bool(before.bool("charges_enabled") ?? false)],
                                           newValues: ["charges_enabled": .bool(account.chargesEnabled)], metadata: eventMetadata),
                                context: audit, on: connection)
            try Notifier.notify(profileID, kind: account.chargesEnabled ? "account_enabled" : "account_restricted",
                                payload: ["account": .string(account.id)], on: connection)
        }
        return .processed
    }

    func accountDeauthorized() throws -> EffectOutcome {
        guard let account = event.account else { return .ignored }
        guard let profile = try connection.query("""
            UPDATE profiles SET charges_enabled = false, payouts_enabled = false, disabled_reason = 'application_deauthorized',
                   account_event_created = GREATEST(account_event_created, \(event.created))
            WHERE stripe_account_id = \(account) RETURNING id::text AS id
            """).first, let profileID = profile["id"] else { return .parked }
        try AuditLog.record(AuditEntry(operation: "account.deauthorized", entityType: "profile", entityID: profileID,
                                       newValues: ["charges_enabled": false], metadata: eventMetadata),
                            context: audit, on: connection)
        try Notifier.notify(profileID, kind: "account_deauthorized", payload: ["account": .string(account)], on: connection)
        return .processed
    }
}
