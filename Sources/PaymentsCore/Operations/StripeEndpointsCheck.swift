import Stripe

/// `payments stripe endpoints check`: both webhook endpoints exist at Stripe as
/// `StripeEndpointSpec` says (URL, pinned API version, exactly our event types, connect flag,
/// enabled). Run at deploy time; `doctor` runs it too.
public enum StripeEndpointsCheck {
    /// One endpoint's verdict: its id at Stripe (nil: missing) and every difference found.
    struct Finding {
        let spec: StripeEndpointSpec
        let endpointID: String?
        let problems: [String]
    }

    /// Prints one line per endpoint, or per difference; false when anything differs.
    public static func run(environment: Environment) throws -> Bool {
        let findings = try findings(environment: environment)
        for finding in findings {
            for line in lines(for: finding) { print(line) }
        }
        return findings.allSatisfy(\.problems.isEmpty)
    }

    /// Reads the settings, lists the account's endpoints and compares ours with the spec.
    static func findings(environment: Environment) throws -> [Finding] {
        let configuration = try ServerConfiguration.stripeConfiguration(environment)
        let specs = StripeEndpointSpec.all(
            publicBaseURL: try StripeEndpointSpec.publicBaseURL(environment), apiVersion: configuration.apiVersion)
        StripeClient.initializeGlobalState()
        let existing = try StripeClient(configuration: configuration).listWebhookEndpoints()
        return specs.map { spec in
            guard let found = spec.find(in: existing) else {
                return Finding(
                    spec: spec, endpointID: nil,
                    problems: [
                        "missing at Stripe (no endpoint for \(spec.url)); `payments stripe endpoints setup` creates it"
                    ])
            }
            return Finding(spec: spec, endpointID: found.id, problems: spec.differences(from: found))
        }
    }

    /// `platform endpoint we_…: ok (…)`, or one line per problem.
    static func lines(for finding: Finding) -> [String] {
        let subject = finding.endpointID.map { "\(finding.spec.name) \($0)" } ?? finding.spec.name
        guard !finding.problems.isEmpty else {
            return [
                "\(subject): ok (\(finding.spec.url), api_version \(finding.spec.apiVersion), "
                    + "\(finding.spec.events.count) event types, enabled)"
            ]
        }
        return finding.problems.map { "\(subject): \($0)" }
    }
}
