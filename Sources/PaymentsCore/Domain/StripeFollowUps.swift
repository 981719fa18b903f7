import Foundation
import Stripe

/// Makes the Stripe calls that events showed are needed, best effort (each under a
/// deterministic key, so a repeat is harmless): cancelling PaymentIntents we gave up on, setting a
/// connected account's payout delay again.
protocol StripeFollowUpSink {
    func perform(_ items: [StripeFollowUp])
}

extension StripeClient: StripeFollowUpSink {
    /// Makes them now, on the calling thread (the CLI's sweeps and replays).
    func perform(_ items: [StripeFollowUp]) {
        for item in items { _ = try? send(item) }
    }

    /// One follow-up's call.
    func send(_ item: StripeFollowUp) throws(StripeError) {
        switch item {
        case .cancel(let cancellation):
            try cancelIntent(
                cancellation.intentID, ofPayment: cancellation.paymentID, reason: .abandoned,
                account: cancellation.account)
        case .payoutDelay(let fix):
            _ = try updateAccount(
                fix.account, [("settings", ["payouts": ["schedule": ["delay_days": .integer(Int64(fix.delayDays))]]])],
                idempotencyKey: StripeKeys.payoutDelay(fix.account, days: fix.delayDays, event: fix.eventID))
        }
    }
}

/// Stripe calls that a request decides on but must not wait for: cancelling an authorisation
/// that a webhook showed we gave up on, setting a payout delay a seller's account lost. Webhook
/// deliveries never wait on Stripe, so they hand these to background threads with Stripe clients
/// of their own. Best effort, as before: each key makes a repeat harmless, and an authorisation
/// nobody captures lapses at Stripe. Each kind has its own bounded queue and thread, so a burst
/// of one (thousands of cancellations after an outage) can neither drop nor delay the other; when
/// a queue is full its oldest work is dropped and counted.
final class StripeFollowUps: StripeFollowUpSink, Sendable {
    private let cancellations: FollowUpQueue
    private let accountFixes: FollowUpQueue

    /// Starts the background threads, or runs nothing when there is no Stripe configuration.
    init(configuration: StripeConfiguration, metrics: Metrics, capacity: Int = 10_000) {
        cancellations = FollowUpQueue(
            kind: Self.kinds[0], configuration: configuration, metrics: metrics, capacity: capacity)
        accountFixes = FollowUpQueue(
            kind: Self.kinds[1], configuration: configuration, metrics: metrics, capacity: capacity)
    }

    /// The kinds the queues are named by in metrics (`kind` label): cancellations, payout-delay fixes.
    static let kinds = ["cancel", "payout_delay"]

    /// Queues the calls, each on its kind's queue; returns at once.
    func perform(_ items: [StripeFollowUp]) {
        var cancels: [StripeFollowUp] = []
        var fixes: [StripeFollowUp] = []
        for item in items {
            switch item {
            case .cancel: cancels.append(item)
            case .payoutDelay: fixes.append(item)
            }
        }
        cancellations.enqueue(cancels)
        accountFixes.enqueue(fixes)
    }

    /// Waits (at most `timeout`, for both queues together) until nothing is queued or being sent:
    /// on shutdown, so that a stopping process does not drop the calls it took on.
    func drain(timeout: Duration) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds))
        return cancellations.drain(until: deadline) && accountFixes.drain(until: deadline)
    }
}

/// One kind's bounded queue and the thread that sends it.
private final class FollowUpQueue: @unchecked Sendable {
    // @unchecked: `pending` and `sending` are touched only while `condition` is locked.
    private let condition = NSCondition()
    private var pending: [StripeFollowUp] = []
    private var sending = false
    private let kind: String
    private let capacity: Int
    private let metrics: Metrics

    init(kind: String, configuration: StripeConfiguration, metrics: Metrics, capacity: Int) {
        self.kind = kind
        self.capacity = capacity
        self.metrics = metrics
        let thread = Thread { [self] in
            // Without a curl handle nothing can be sent; the queue then only counts what it drops.
            guard let stripe = try? StripeClient(configuration: configuration) else { return }
            while true { self.send(self.next(), with: stripe) }
        }
        thread.name = "stripe-follow-ups-\(kind)"
        thread.start()
    }

    func enqueue(_ items: [StripeFollowUp]) {
        guard !items.isEmpty else { return }
        condition.lock()
        pending.append(contentsOf: items)
        if pending.count > capacity {
            let dropped = pending.count - capacity
            pending.removeFirst(dropped)
            for _ in 0..<dropped { metrics.increment("payments_stripe_follow_ups_dropped_total{kind=\"\(kind)\"}") }
        }
        condition.broadcast()
        condition.unlock()
    }

    func drain(until deadline: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !pending.isEmpty || sending {
            guard condition.wait(until: deadline) else { return false }
        }
        return true
    }

    private func next() -> StripeFollowUp {
        condition.lock()
        defer { condition.unlock() }
        sending = false
        condition.broadcast()
        while pending.isEmpty { condition.wait() }
        sending = true
        return pending.removeFirst()
    }

    private func send(_ item: StripeFollowUp, with stripe: StripeClient) {
        let outcome: String
        do {
            try stripe.send(item)
            outcome = "ok"
        } catch {
            outcome = "failed"
        }
        metrics.increment("payments_stripe_follow_ups_total{kind=\"\(kind)\",outcome=\"\(outcome)\"}")
    }
}
