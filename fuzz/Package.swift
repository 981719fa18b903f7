// swift-tools-version: 5.4
import PackageDescription

/// Coverage-guided fuzzing (libFuzzer) of the parsers that read untrusted bytes: one binary,
/// `payments-fuzz`, whose target is chosen by `FUZZ_TARGET`. Built and run by `make fuzz`
/// (scripts/fuzz.sh) as a release build with `-sanitize=fuzzer,address -parse-as-library
/// -enable-testing`; not part of `make test`.
///
/// Tools version 5.4 on purpose: from 5.5 on, SwiftPM renames an executable's `main` to
/// `<module>_main` for testable executables, and the link then looks for that symbol instead of
/// using libFuzzer's `main`.
let package = Package(
    name: "payments-fuzz",
    platforms: [.macOS("14.0")],
    dependencies: [
        .package(name: "payments", path: "..")
    ],
    targets: [
        // `-enable-testing` (implied by a debug build; scripts/fuzz.sh passes it to its release
        // build, about ten times faster) lets `@testable import` reach the internal parsers
        // (TokenVerifier, Base64URL, PageCursor, …).
        .executableTarget(
            name: "payments-fuzz",
            dependencies: [.product(name: "PaymentsCore", package: "payments")],
            path: "Sources/PaymentsFuzz"
        )
    ]
)
