import ArgumentParser
import PaymentsCore
import Stripe
import Testing

@testable import PaymentsCLI

/// The command line's grammar: typed options, validation as misuse (exit 64), help and version
/// as clean exits — all decided before any command runs.
@Suite struct ParsingTests {
    @Test func subcommandsParseTheirTypedOptions() throws {
        let list = try #require(
            try PaymentsCommand.parseAsRoot(["events", "list", "--status", "dead", "--limit", "5"]) as? Events.List)
        #expect(list.status == "dead" && list.limit == 5)
        let defaults = try #require(try PaymentsCommand.parseAsRoot(["events", "list"]) as? Events.List)
        #expect(defaults.status == nil && defaults.limit == 100)
        let token = try #require(try PaymentsCommand.parseAsRoot(["token", "--user", "u1"]) as? Token)
        #expect(token.user == "u1" && token.ttl == 3600)
        #expect(try PaymentsCommand.parseAsRoot(["stripe", "endpoints", "check"]) is StripeGroup.Check)
        #expect(try PaymentsCommand.parseAsRoot(["seed-demo"]) is SeedDemo)
        #expect(try PaymentsCommand.parseAsRoot(["doctor"]) is PaymentsCLI.Doctor)
    }

    @Test func replaySelectsByIdOrByTypeSince() throws {
        let byID = try #require(
            try PaymentsCommand.parseAsRoot(["events", "replay", "--id", "evt_1"]) as? Events.Replay)
        #expect(byID.selection == .id("evt_1"))
        let byType = try #require(
            try PaymentsCommand.parseAsRoot(["events", "replay", "--type", "charge.refunded", "--since", "10"])
                as? Events.Replay)
        #expect(byType.selection == .type("charge.refunded", since: 10))
    }

    @Test(arguments: [
        [], ["frobnicate"], ["sweep", "--now"], ["token"], ["token", "--user", ""],
        ["token", "--user", "u", "--ttl", "0"],
        ["token", "--user", "u", "--ttl", "999999999"], ["token", "--user", "u", "--ttl", "x"],
        ["events", "list", "--status", "lost"], ["events", "list", "--limit", "0"], ["events", "replay"],
        ["events", "replay", "--id", "a", "--type", "b"], ["events", "replay", "--id", "a", "--since", "1"],
        ["events", "replay", "--type", "t", "--since", "-1"], ["stripe", "endpoints", "setup", "--force"],
        ["doctor", "--fix"],
    ])
    func misuseExits64(arguments: [String]) {
        do {
            var command = try PaymentsCommand.parseAsRoot(arguments)
            // `payments` alone parses; running it is the misuse.
            #expect(arguments.isEmpty, "parsed: \(arguments)")
            #expect(throws: ValidationError.self) { try command.run() }
        } catch {
            #expect(PaymentsCommand.exitCode(for: error).rawValue == 64, "\(arguments): \(error)")
        }
    }

    @Test(arguments: [
        ["sweep", "--help"], ["migrate", "-h"], ["seed-demo", "--help"], ["stripe", "endpoints", "setup", "--help"],
    ])
    func helpIsACleanExitBeforeAnythingRuns(arguments: [String]) throws {
        // What runs is ArgumentParser's help command, never the command asked about.
        let command = try PaymentsCommand.parseAsRoot(arguments)
        #expect(String(describing: type(of: command)) == "HelpCommand")
        #expect(!(command is Sweep || command is Migrate || command is SeedDemo || command is StripeGroup.Setup))
    }

    @Test func versionNamesOursAndThePinnedStripeVersion() {
        #expect(
            PaymentsCommand.configuration.version
                == "payments \(PaymentsVersion.current) (Stripe API \(StripeConfiguration.pinnedAPIVersion))")
    }
}
