import Postgres

/// A payment's kind (`payments.kind`): a purchase is a destination charge captured by hand; a
/// milestone, a platform charge released to the seller later by a transfer.
enum PaymentKind: String, CaseIterable, SQLDecodable, Encodable {
    case purchase
    case milestone
}
