// swift-tools-version: 6.0
import PackageDescription

/// The marketplace payments service: one executable (`payments`) with subcommands, built on
/// four system libraries, each wrapped by exactly one Swift module.
let package = Package(
    name: "payments",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "payments", targets: ["payments"]),
        // For the fuzzing package in fuzz/ (make fuzz), which links the parsers it fuzzes.
        .library(name: "PaymentsCore", targets: ["PaymentsCore"]),
    ],
    dependencies: [
        // The command line's parser: used by the PaymentsCLI target only (docs/architecture.md).
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
    ],
    targets: [
        // C libraries: one system-library target each, imported only by its wrapper.
        .systemLibrary(name: "CFastCGI", pkgConfig: "fcgi", providers: [.apt(["libfcgi-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        // Safe Swift wrappers.
        .target(name: "FastCGI", dependencies: ["CFastCGI"]),
        .target(name: "Postgres", dependencies: ["CLibPQ"]),
        .target(name: "HTTPClient", dependencies: ["CCurl"]),
        .target(name: "Cryptography", dependencies: ["CCrypto"]),

        // A linear-time JSON parser for untrusted bytes, and the value it produces.
        .target(name: "JSON"),

        // Stripe: the API client and the webhook signature verifier (and signer).
        .target(name: "Stripe", dependencies: ["HTTPClient", "Cryptography", "JSON"]),

        // The application: configuration, router, responders, shared guards, migrations.
        // HTTPClient directly for the notification dispatcher's outbound webhooks and SMTP.
        .target(
            name: "PaymentsCore", dependencies: ["FastCGI", "Postgres", "HTTPClient", "Stripe", "Cryptography", "JSON"]),
        // The command line: one ParsableCommand per subcommand, over PaymentsCore's operations.
        .target(
            name: "PaymentsCLI",
            dependencies: ["PaymentsCore", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "payments", dependencies: ["PaymentsCLI"]),

        .testTarget(
            name: "PaymentsCoreTests",
            dependencies: ["PaymentsCore", "Postgres", "Cryptography", "HTTPClient", "Stripe", "FastCGI", "JSON"]),
        .testTarget(name: "PaymentsCLITests", dependencies: ["PaymentsCLI", "PaymentsCore", "Stripe"]),
    ],
    swiftLanguageModes: [.v6]
)
