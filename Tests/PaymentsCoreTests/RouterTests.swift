import Testing
@testable import PaymentsCore

@Suite struct RouterTests {
    @Test func placeholder() { #expect(true) }
}
