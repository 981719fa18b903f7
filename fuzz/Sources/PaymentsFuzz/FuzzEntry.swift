import Foundation
import Synchronization

/// The parsers this binary fuzzes; `FUZZ_TARGET` picks one per run.
enum FuzzTarget: String, CaseIterable, Sendable {
    /// `JSONParser.parse`: depth limit, and re-encoding round trips.
    case json
    /// `TokenVerifier.verify` (HS256 secret, no JWKS) and `Base64URL`.
    case jwt
    /// `WebhookSignatureVerifier.verify(header:body:now:)`: the input is a header line and a body.
    case signature
    /// `Request.parseQuery`, `AuthResolver.cookies`, `PageCursor(encoded:)`, `OnboardingState.decode`.
    case query

    /// The target named by `FUZZ_TARGET`; an unknown name stops the process before any input runs.
    static let selected: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            let names = allCases.map(\.rawValue).joined(separator: "|")
            writeError("payments-fuzz: set FUZZ_TARGET=\(names) (got \"\(name)\")\n")
            exit(2)
        }
        return target
    }()

    func run(_ bytes: [UInt8]) {
        switch self {
        case .json: JSONFuzz.run(bytes)
        case .jwt: JWTFuzz.run(bytes)
        case .signature: SignatureFuzz.run(bytes)
        case .query: QueryFuzz.run(bytes)
        }
    }
}

/// Reads the target before the first input, so a wrong name fails at once.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>?,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?
) -> CInt {
    _ = FuzzTarget.selected
    atexit { SlowestInput.report() }
    return 0
}

/// libFuzzer's entry point: one input, handed to the selected target.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let start = DispatchTime.now().uptimeNanoseconds
    FuzzTarget.selected.run(bytes)
    SlowestInput.record(nanoseconds: DispatchTime.now().uptimeNanoseconds - start, size: size)
    return 0
}

/// The slowest input of this process, printed when it exits: libFuzzer's own figure
/// (`stat::slowest_unit_time_sec`) counts whole seconds only.
enum SlowestInput {
    private static let slowest = Mutex<(nanoseconds: UInt64, size: Int)>((0, 0))

    static func record(nanoseconds: UInt64, size: Int) {
        slowest.withLock { if nanoseconds > $0.nanoseconds { $0 = (nanoseconds, size) } }
    }

    static func report() {
        let (nanoseconds, size) = slowest.withLock { $0 }
        let milliseconds = (Double(nanoseconds) / 1e6 * 10).rounded() / 10
        writeError("payments-fuzz: slowest input \(milliseconds) ms (\(size) bytes)\n")
    }
}

/// Stops the run when an invariant does not hold: libFuzzer reports the abort as a crash and
/// saves the input that caused it.
func check(
    _ condition: Bool, _ message: @autoclosure () -> String,
    file: StaticString = #fileID, line: UInt = #line
) {
    guard !condition else { return }
    writeError("invariant failed at \(file):\(line): \(message())\n")
    abort()
}

func writeError(_ text: String) {
    var text = text
    text.withUTF8 { buffer in _ = write(2, buffer.baseAddress, buffer.count) }
}
