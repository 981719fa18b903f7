import Postgres

/// A milestone's status (`milestones.status`): `pending` until a buyer starts funding it,
/// `funding` while its charge is being created, `funded` once paid, `released` once its
/// transfer reached the seller; `refunded` and `disputed` are set by refunds and disputes.
enum MilestoneStatus: String, CaseIterable, SQLDecodable {
    case pending
    case funding
    case funded
    case released
    case refunded
    case disputed

    /// A buyer may start funding it.
    var isFundable: Bool { self == .pending }

    /// A funding attempt was started and may be unfinished: its buyer's retry takes it over.
    var isFundingUnderway: Bool { self == .funding }

    /// Paid and not yet released: its buyer (or an admin's resolution) may release it.
    var isReleasable: Bool { self == .funded }

    /// Its transfer to the seller was made.
    var isReleased: Bool { self == .released }
}
