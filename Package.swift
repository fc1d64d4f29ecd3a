// swift-tools-version: 6.0
import PackageDescription

// Dependencies point one way: core <- nn <- models <- (tracking, propagation, detection) <- command line.
// Only CycleTimeCore touches OpenBLAS.
let package = Package(
    name: "CycleTime",
    products: [
        .executable(name: "cycletime", targets: ["cycletime"]),
        .library(name: "CycleTimeCore", targets: ["CycleTimeCore"]),
        .library(name: "CycleTimeNN", targets: ["CycleTimeNN"]),
        .library(name: "CycleTimeModels", targets: ["CycleTimeModels"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .target(name: "CycleTimeCore", dependencies: ["COpenBLAS"]),
        .target(name: "CycleTimeNN", dependencies: ["CycleTimeCore"]),
        .target(name: "CycleTimeModels", dependencies: ["CycleTimeNN"]),
        .target(name: "CycleTimeTracking", dependencies: ["CycleTimeModels"]),
        .executableTarget(
            name: "cycletime",
            dependencies: [
                "CycleTimeCore", "CycleTimeNN", "CycleTimeModels",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .target(name: "TestSupport", dependencies: ["CycleTimeCore"], path: "Tests/TestSupport"),
        .testTarget(name: "CycleTimeCoreTests", dependencies: ["CycleTimeCore", "TestSupport"]),
        .testTarget(name: "CycleTimeNNTests", dependencies: ["CycleTimeNN", "TestSupport"]),
        .testTarget(name: "CycleTimeModelsTests", dependencies: ["CycleTimeModels", "TestSupport"]),
        .testTarget(name: "CycleTimeTrackingTests", dependencies: ["CycleTimeTracking", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
