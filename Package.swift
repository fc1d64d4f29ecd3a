// swift-tools-version: 6.0
import PackageDescription

// Dependencies point one way (see README): core <- nn <- models <- tracking <- pretraining; training is generic;
// detection and pretraining plug tasks into it; report reads their results; the command line sits on top.
// Only CycleTimeCore touches OpenBLAS and oneDNN.
let package = Package(
    name: "CycleTime",
    products: [
        .executable(name: "cycletime", targets: ["cycletime"]),
        .library(name: "CycleTimeCore", targets: ["CycleTimeCore"]),
        .library(name: "CycleTimeNN", targets: ["CycleTimeNN"]),
        .library(name: "CycleTimeModels", targets: ["CycleTimeModels"]),
        .library(name: "CycleTimeVideo", targets: ["CycleTimeVideo"]),
        .library(name: "CycleTimeData", targets: ["CycleTimeData"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        // oneDNN (Debian libdnnl-dev 2.6, no pkg-config file): the module map links libdnnl.
        .systemLibrary(
            name: "CDNNL", path: "Sources/CDNNL",
            providers: [.apt(["libdnnl-dev"])]),
        .target(name: "CycleTimeCore", dependencies: ["COpenBLAS", "CDNNL"]),
        // Video and image I/O: only CycleTimeVideo touches FFmpeg, libpng, libjpeg and zlib.
        .systemLibrary(
            name: "CFFmpeg", path: "Sources/CFFmpeg", pkgConfig: "libavformat libavcodec libswscale libavutil",
            providers: [.apt(["libavformat-dev", "libavcodec-dev", "libswscale-dev", "libavutil-dev"])]),
        .systemLibrary(
            name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
            providers: [.apt(["libpng-dev"])]),
        .systemLibrary(
            name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
            providers: [.apt(["libjpeg-dev"])]),
        .systemLibrary(
            name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CycleTimeVideo", dependencies: ["CycleTimeCore", "CFFmpeg", "CPNG", "CJPEG", "CZlib"]),
        .target(name: "CycleTimeData", dependencies: ["CycleTimeCore", "CycleTimeVideo"]),
        .target(name: "CycleTimeNN", dependencies: ["CycleTimeCore"]),
        .target(name: "CycleTimeModels", dependencies: ["CycleTimeNN"]),
        .target(name: "CycleTimeTracking", dependencies: ["CycleTimeModels"]),
        // Data-parallel training on MPI (Open MPI): only CycleTimeDistributed touches MPI.
        .systemLibrary(
            name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .target(name: "CycleTimeDistributed", dependencies: ["CycleTimeNN", "CMPI"]),
        // Generic training (knows no task): YAML config loading and validation, the training loop on
        // LoopSettings, the run set-up (MPI + locked run directory), checkpoints, resume, progress.
        .target(name: "CycleTimeTraining", dependencies: [
            "CycleTimeNN", "CycleTimeData", "CycleTimeDistributed", .product(name: "Yams", package: "Yams"),
        ]),
        // Pretraining tasks on the generic trainer: TimeCycle and the contrastive random walk.
        .target(name: "CycleTimePretraining", dependencies: ["CycleTimeTraining", "CycleTimeTracking", "CycleTimeData", "CycleTimePropagation"]),
        // AVA detection: formats, evaluation, datasets, backbones, the detector, AVA training and inference.
        .target(name: "CycleTimeDetection", dependencies: ["CycleTimeTraining", "CycleTimeModels", "CycleTimeData", "CycleTimeVideo"]),
        .target(name: "CycleTimePropagation", dependencies: ["CycleTimeModels", "CycleTimeData", "CycleTimeVideo"]),
        // Reports: notebooks and Markdown pages with SVG curves and PNG frames (libpng via CycleTimeVideo).
        .target(name: "CycleTimeReport", dependencies: ["CycleTimeVideo", "CycleTimePretraining", "CycleTimePropagation", "CycleTimeDetection"]),
        .executableTarget(
            name: "cycletime",
            dependencies: [
                "CycleTimeCore", "CycleTimeNN", "CycleTimeModels", "CycleTimeVideo", "CycleTimeData",
                "CycleTimeTracking", "CycleTimeTraining", "CycleTimePretraining", "CycleTimeDetection", "CycleTimeDistributed",
                "CycleTimePropagation", "CycleTimeReport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .target(name: "TestSupport", dependencies: ["CycleTimeCore", "CycleTimeVideo"], path: "Tests/TestSupport"),
        .testTarget(name: "CycleTimeCoreTests", dependencies: ["CycleTimeCore", "TestSupport"]),
        .testTarget(name: "CycleTimeNNTests", dependencies: ["CycleTimeNN", "TestSupport"]),
        .testTarget(name: "CycleTimeModelsTests", dependencies: ["CycleTimeModels", "TestSupport"]),
        .testTarget(name: "CycleTimeVideoTests", dependencies: ["CycleTimeVideo", "TestSupport"]),
        .testTarget(name: "CycleTimeDataTests", dependencies: ["CycleTimeData", "CycleTimeVideo", "TestSupport"]),
        .testTarget(name: "CycleTimeDistributedTests", dependencies: ["CycleTimeDistributed", "TestSupport"]),
        .testTarget(name: "CycleTimeTrackingTests", dependencies: ["CycleTimeTracking", "CycleTimeVideo", "TestSupport"]),
        .testTarget(name: "CycleTimeTrainingTests", dependencies: ["CycleTimeTraining", "CycleTimePretraining", "TestSupport"]),
        .testTarget(name: "CycleTimePretrainingTests", dependencies: ["CycleTimePretraining", "CycleTimeVideo", "TestSupport"]),
        .testTarget(name: "CycleTimeDetectionTests", dependencies: ["CycleTimeDetection", "CycleTimeTraining", "CycleTimeVideo", "TestSupport"]),
        .testTarget(name: "CycleTimePropagationTests", dependencies: ["CycleTimePropagation", "CycleTimeData", "CycleTimeVideo", "TestSupport"]),
        .testTarget(name: "CycleTimeReportTests", dependencies: ["CycleTimeReport", "CycleTimeDetection", "CycleTimeVideo", "TestSupport"]),
        // Every test that runs the executable or parses its commands; no library test target depends on it.
        .testTarget(name: "cycletimeTests", dependencies: [
            "cycletime", "CycleTimeCore", "CycleTimeNN", "CycleTimeModels", "CycleTimeVideo", "CycleTimeData", "CycleTimeTracking",
            "CycleTimeTraining", "CycleTimePretraining", "CycleTimeDetection", "CycleTimePropagation", "CycleTimeReport", "TestSupport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
