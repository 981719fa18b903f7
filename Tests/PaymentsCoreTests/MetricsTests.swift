import Dispatch
import Testing

@testable import PaymentsCore
@testable import Stripe

/// Issue 18, item 4: bounded Stripe operation labels and the exposition's histograms.
@Suite struct MetricsTests {
    @Test func stripeOperationsAreTemplatedPaths() {
        #expect(StripeClient.operation(method: "POST", path: "/v1/payment_intents") == "POST /v1/payment_intents")
        #expect(
            StripeClient.operation(method: "POST", path: "/v1/payment_intents/pi_123/capture")
                == "POST /v1/payment_intents/{id}/capture")
        #expect(
            StripeClient.operation(method: "GET", path: "/v1/payment_intents/pi_1?expand%5B0%5D=latest_charge")
                == "GET /v1/payment_intents/{id}")
        #expect(
            StripeClient.operation(method: "POST", path: "/v1/transfers/tr_9/reversals")
                == "POST /v1/transfers/{id}/reversals")
        #expect(StripeClient.operation(method: "GET", path: "/v1/balance") == "GET /v1/balance")
    }

    @Test func seriesCountedOnManyThreadsAreAddedUp() {
        let metrics = Metrics()
        DispatchQueue.concurrentPerform(iterations: 16) { _ in
            for _ in 0..<100 {
                metrics.increment("payments_test_total")
                metrics.recordRequest(lane: "core", route: "/api/health", status: 200, microseconds: 1_000)
            }
            metrics.setWorkerBusy(lane: "core", true)
        }
        let text = metrics.render(instance: "h")
        #expect(text.contains(#"payments_test_total{instance="h"} 1600"#))
        #expect(
            text.contains(
                #"payments_http_requests_total{instance="h",lane="core",route="/api/health",status="200"} 1600"#))
        #expect(
            text.contains(
                #"payments_http_request_duration_seconds_count{instance="h",route="/api/health",status_class="2xx"} 1600"#
            ))
        let busy = metrics.laneFamilies(workers: [("core", 16)]).first { $0.name == "payments_lane_busy_workers" }
        #expect(busy?.samples.first?.value == 16)
    }

    @Test func histogramsAreCumulativeAndCarryTheInstance() {
        let metrics = Metrics()
        metrics.recordRequest(lane: "core", route: "/api/health", status: 200, microseconds: 3_000)
        metrics.recordRequest(lane: "core", route: "/api/health", status: 204, microseconds: 70_000)
        metrics.observeStripeCall(operation: "GET /v1/balance", outcome: "ok", seconds: 0.2)
        let text = metrics.render(instance: "h/app.sock")
        let health = #"instance="h/app.sock",route="/api/health",status_class="2xx""#
        #expect(text.contains(#"payments_http_request_duration_seconds_bucket{\#(health),le="0.005"} 1"#))
        #expect(text.contains(#"payments_http_request_duration_seconds_bucket{\#(health),le="0.1"} 2"#))
        #expect(text.contains(#"payments_http_request_duration_seconds_count{\#(health)} 2"#))
        #expect(text.contains("# TYPE payments_stripe_request_duration_seconds histogram"))
        #expect(
            text.contains(
                #"payments_stripe_requests_total{instance="h/app.sock",operation="GET /v1/balance",outcome="ok"} 1"#))
        #expect(text.contains(#"payments_webhook_processing_seconds_count{instance="h/app.sock"} 0"#))
    }
}
