import Foundation
import Stripe

/// Cancels PaymentIntents that an event showed we gave up on, best effort (each with the
/// payment's cancel key, so a repeat is harmless).
protocol IntentCanceller {
    func cancel(_ items: [IntentCancellation])
}

extension StripeClient: IntentCanceller {
    /// Cancels now, on the calling thread (the CLI's sweeps and replays).
    func cancel(_ items: [IntentCancellation]) {
        for item in items {
            _ = try? cancelIntent(item.intentID, ofPayment: item.paymentID, reason: .abandoned, account: item.account)
        }
    }
}

/// Stripe calls that a request decides on but must not wait for: cancelling an authorisation
/// that a webhook showed we gave up on. Webhook deliveries never wait on Stripe, so they hand
/// these to one background thread with a Stripe client of its own. Best effort, as before:
/// the cancel key makes a repeat harmless, and an authorisation nobody captures lapses at
/// Stripe. The queue is bounded; when it is full the oldest work is dropped and counted.
final class StripeFollowUps: IntentCanceller, @unchecked Sendable {
    // @unchecked: `pending` is touched only while `condition` is locked.
    private let condition = NSCondition()
    private var pending: [IntentCancellation] = []
    private var sending = false
    private let capacity: Int
    private let metrics: Metrics

    /// Starts the background thread, or runs nothing when there is no Stripe configuration.
    init(configuration: StripeConfiguration, metrics: Metrics, capacity: Int = 10_000) {
        self.capacity = capacity
        self.metrics = metrics
        let thread = Thread { [self] in
            // Without a curl handle nothing can be sent; the queue then only counts what it drops.
            guard let stripe = try? StripeClient(configuration: configuration) else { return }
            while true { self.perform(self.next(), with: stripe) }
        }
        thread.name = "stripe-follow-ups"
        thread.start()
    }

    /// Queues cancellations; returns at once.
    func cancel(_ items: [IntentCancellation]) {
        guard !items.isEmpty else { return }
        condition.lock()
        pending.append(contentsOf: items)
        if pending.count > capacity {
            let dropped = pending.count - capacity
            pending.removeFirst(dropped)
            for _ in 0..<dropped { metrics.increment("payments_stripe_follow_ups_dropped_total") }
        }
        condition.broadcast()
        condition.unlock()
    }

    /// Waits (at most `timeout`) until the queue is empty and nothing is being sent: on
    /// shutdown, so that a stopping process does not drop the cancellations it took on.
    func drain(timeout: Duration) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds))
        condition.lock()
        defer { condition.unlock() }
        while !pending.isEmpty || sending {
            guard condition.wait(until: deadline) else { return false }
        }
        return true
    }

    private func next() -> IntentCancellation {
        condition.lock()
        defer { condition.unlock() }
        sending = false
        condition.broadcast()
        while pending.isEmpty { condition.wait() }
        sending = true
        return pending.removeFirst()
    }

    private func perform(_ item: IntentCancellation, with stripe: StripeClient) {
        let outcome: String
        do {
            try stripe.cancelIntent(item.intentID, ofPayment: item.paymentID, reason: .abandoned, account: item.account)
            outcome = "ok"
        } catch {
            outcome = "failed"
        }
        metrics.increment("payments_stripe_follow_ups_total{outcome=\"\(outcome)\"}")
    }
}
