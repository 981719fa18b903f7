import Foundation
import Postgres
import Stripe

/// Connected accounts, as the Connect webhook reports them.
extension WebhookEffects {
    /// Applies to the profile of the event's connected account (`event.account`, which Stripe
    /// sets on Connect deliveries) and only when the object is that account: an event whose
    /// object names another account must not change that other seller's profile. A seller of
    /// ours whose payout delay differs from `PAYOUT_DELAY_DAYS` gets it set again, after the
    /// commit — only from the newest view of the account: an older event applied late (the
    /// profile already holds a newer one) shows a delay that may long have been fixed.
    func accountUpdated(_ account: Account, followUps: inout [StripeFollowUp]) throws -> EffectOutcome {
        guard let eventAccount = event.account, eventAccount == account.id else { return .refused }
        let synced = try AccountMirror.sync(
            account, eventCreated: event.created, operation: "account.updated", metadata: eventMetadata,
            audit: audit, on: connection)
        if case .synced = synced, let wanted = payoutDelayDays, let shown = account.payoutDelayDays,
            shown != Int64(wanted)
        {
            followUps.append(.payoutDelay(PayoutDelayFix(account: account.id, delayDays: wanted, eventID: event.id)))
        }
        return try outcome(of: synced, account)
    }

    private func outcome(of synced: AccountMirror.Result, _ account: Account) throws -> EffectOutcome {
        switch synced {
        case .unknownAccount:
            return .parked
        case .stale, .synced(_, chargesChanged: false):
            return .processed
        case .synced(let profileID, chargesChanged: true):
            try Notifier.notify(
                profileID, kind: account.chargesEnabled ? .accountEnabled : .accountRestricted,
                payload: ["account": .string(account.id)], on: connection)
            return .processed
        }
    }

    func accountDeauthorized() throws -> EffectOutcome {
        guard let account = event.account else { return .ignored }
        guard
            let profile = try connection.query(
                """
                UPDATE profiles SET charges_enabled = false, payouts_enabled = false, disabled_reason = 'application_deauthorized',
                       account_event_created = GREATEST(account_event_created, \(event.created))
                WHERE stripe_account_id = \(account) RETURNING id::text AS id
                """
            ).first
        else { return .parked }
        let profileID: String = try profile.decode("id")
        try AuditLog.record(
            AuditEntry(
                operation: "account.deauthorized", entityType: "profile", entityID: profileID,
                newValues: ["charges_enabled": false], metadata: eventMetadata),
            context: audit, on: connection)
        try Notifier.notify(
            profileID, kind: .accountDeauthorized, payload: ["account": .string(account)], on: connection)
        return .processed
    }
}
