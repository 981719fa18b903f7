/// The plain-text email of each notification kind: a subject and a body whose `{field}`
/// placeholders are filled from the notification's payload (`{amount}` is `amount_cents` in the
/// currency's major unit). Every email ends with the payload's fields, so nothing a template
/// leaves out is lost. The `switch` is exhaustive: a new `NotificationKind` does not build
/// until it has its template.
struct MailTemplate: Equatable {
    let subject: String
    let body: String

    /// The template of `kind`.
    static func of(_ kind: NotificationKind) -> MailTemplate {
        switch kind {
        case .paymentAuthorized:
            MailTemplate(
                subject: "Payment authorised: {amount}",
                body: "A buyer's card is authorised for {amount} (payment {payment_id}). "
                    + "The money is captured when the buyer confirms delivery.")
        case .paymentSucceeded:
            MailTemplate(
                subject: "Payment {payment_id} succeeded",
                body: "Payment {payment_id} has been captured. Thank you for using the marketplace.")
        case .paymentFailed:
            MailTemplate(
                subject: "Your payment did not go through",
                body: "Your payment {payment_id} failed. No money was taken; you can try again with another card.")
        case .paymentCanceled:
            MailTemplate(
                subject: "Payment {payment_id} was cancelled",
                body: "Payment {payment_id} was cancelled and any hold on the card was released.")
        case .paymentRefunded:
            MailTemplate(
                subject: "Payment {payment_id} was refunded",
                body: "Payment {payment_id} was refunded, in whole or in part. "
                    + "A refund takes 5 to 10 days to appear on the card's statement.")
        case .refundIssued:
            MailTemplate(
                subject: "A refund of {amount} is on its way",
                body: "We refunded {amount} of payment {payment_id}. "
                    + "It takes 5 to 10 days to appear on the card's statement.")
        case .milestoneReleased:
            MailTemplate(
                subject: "Milestone released: {amount}",
                body: "The buyer released milestone {milestone_id}: {amount} is on its way to your account.")
        case .reservationExpired:
            MailTemplate(
                subject: "Your reservation expired",
                body: "Payment {payment_id} was not completed in time, so the listing is available again. "
                    + "No money was taken.")
        case .fundingAbandoned, .fundingExpired:
            MailTemplate(
                subject: "A milestone funding was not completed",
                body: "The funding of payment {payment_id} was not completed in time and was cancelled. "
                    + "The milestone can be funded again.")
        case .authorizationExpiring:
            MailTemplate(
                subject: "A card authorisation lapses soon",
                body: "The card authorisation of payment {payment_id} lapses soon: on {action_at} it will be "
                    + "handled automatically ({action}) unless the delivery is confirmed first.")
        case .authorizationCancelled:
            MailTemplate(
                subject: "Payment {payment_id} was cancelled before its authorisation lapsed",
                body: "Nobody confirmed delivery of payment {payment_id} before the card authorisation lapsed, "
                    + "so we cancelled it and released the hold on the card.")
        case .holdExpiryBlocked:
            MailTemplate(
                subject: "Action needed: a disputed authorisation is about to lapse",
                body: "Payment {payment_id} could not be captured automatically because a dispute is open. "
                    + "Resolve the dispute before the authorisation lapses.")
        case .disputeOpened:
            MailTemplate(
                subject: "A dispute was opened on payment {payment_id}",
                body: "Dispute {dispute_id} was opened on payment {payment_id}. "
                    + "Capture and release are on hold until it is resolved.")
        case .disputeResolved:
            MailTemplate(
                subject: "Dispute {dispute_id} was resolved",
                body: "Dispute {dispute_id} was resolved with the outcome: {outcome}.")
        case .chargebackOpened:
            MailTemplate(
                subject: "A chargeback of {amount} was opened",
                body: "The cardholder's bank opened a chargeback of {amount} on payment {payment_id} "
                    + "(reason: {reason}). Evidence can be submitted from the admin console.")
        case .chargebackRecovered:
            MailTemplate(
                subject: "A chargeback of {amount} was recovered from your balance",
                body: "We took back {amount} for the chargeback on payment {payment_id} (dispute {dispute_id}).")
        case .chargebackRecoveryReturned:
            MailTemplate(
                subject: "A chargeback was won: {amount} is returned",
                body: "The chargeback on payment {payment_id} was won, so the {amount} recovered from you is returned.")
        case .sellerDebt:
            MailTemplate(
                subject: "A chargeback of {amount} could not be recovered",
                body: "The {amount} of the chargeback on payment {payment_id} (dispute {dispute_id}) could not be "
                    + "taken back from the seller's balance yet; it is retried automatically.")
        case .accountEnabled:
            MailTemplate(
                subject: "Your account can take payments",
                body: "Your payments account {account} is ready: buyers can now pay for your listings.")
        case .accountRestricted:
            MailTemplate(
                subject: "Your account cannot take payments for now",
                body: "Stripe needs more information about your payments account {account}. "
                    + "Finish onboarding from the seller page to take payments again.")
        case .accountDeauthorized:
            MailTemplate(
                subject: "Your payments account was disconnected",
                body: "Your payments account {account} was disconnected from the marketplace. "
                    + "Buyers cannot pay you until you connect an account again.")
        case .payoutPaid:
            MailTemplate(
                subject: "Payout of {amount} paid",
                body: "Payout {payout_id} of {amount} was paid to your bank account.")
        case .payoutFailed:
            MailTemplate(
                subject: "Payout of {amount} failed",
                body: "Payout {payout_id} of {amount} failed. Check your bank details in the Stripe dashboard.")
        }
    }

    /// The subject and body for a notification, placeholders filled; a field the payload lacks
    /// reads "(not given)". Line breaks in values are flattened (they could start a header).
    func rendered(payload: [String: JSONValue]) -> (subject: String, body: String) {
        var text = body + "\n\nDetails:\n"
        for key in payload.keys.sorted() {
            text += "  \(key): \(Self.text(of: payload[key]))\n"
        }
        return (Self.fill(subject, payload), Self.fill(text, payload))
    }

    private static func fill(_ template: String, _ payload: [String: JSONValue]) -> String {
        var output = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            output += rest[..<open]
            let name = String(rest[rest.index(after: open)..<close])
            output += name == "amount" ? amount(payload) : text(of: payload[name])
            rest = rest[rest.index(after: close)...]
        }
        return output + rest
    }

    private static func text(of value: JSONValue?) -> String {
        let shown: String
        switch value {
        case .string(let string)?: shown = string
        case .int(let number)?: shown = String(number)
        case .bool(let flag)?: shown = String(flag)
        case nil, .null?: return "(not given)"
        case let other?: shown = String(decoding: JSONCoding.encode(other), as: UTF8.self)
        }
        return String(shown.map { $0.isNewline ? " " : $0 }.prefix(500))
    }

    /// Currencies Stripe counts in whole units (no minor unit).
    private static let zeroDecimalCurrencies: Set<String> = [
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
    ]

    /// `amount_cents` in the major unit (`42.00 USD`; without a currency, two decimals).
    private static func amount(_ payload: [String: JSONValue]) -> String {
        guard case .int(let cents)? = payload["amount_cents"] else { return "(not given)" }
        var currency: String?
        if case .string(let code)? = payload["currency"] { currency = code.lowercased() }
        let suffix = currency.map { " " + $0.uppercased() } ?? ""
        if let currency, zeroDecimalCurrencies.contains(currency) { return "\(cents)\(suffix)" }
        let sign = cents < 0 ? "-" : ""
        let magnitude = cents.magnitude
        let fraction = magnitude % 100 < 10 ? "0\(magnitude % 100)" : "\(magnitude % 100)"
        return "\(sign)\(magnitude / 100).\(fraction)\(suffix)"
    }
}
