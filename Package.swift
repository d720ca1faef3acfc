// swift-tools-version:6.0
import PackageDescription
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Our own SIMD kernels need a concrete CPU target: without one, Swift lowers `addingProduct` on SIMD vectors to a
/// libcall per lane. The default `haswell` (AVX2 + FMA + F16C) runs on any x86-64 of the last decade, including the
/// GPU hosts a static binary is copied to. Set `LEAN_TARGET_CPU=znver4` (or `skylake-avx512`, `native`) when building
/// for a known AVX-512 machine. Matmul and convolution go through oneDNN, which picks its ISA at run time either way.
let targetCPU: String? = {
    if let env = getenv("LEAN_TARGET_CPU") { return String(cString: env) }
    #if arch(x86_64)
    return "haswell"
    #else
    return nil
    #endif
}()

let kernelSettings: [SwiftSetting] = targetCPU.map { [.unsafeFlags(["-target-cpu", $0])] } ?? []

let package = Package(
    name: "LeanDiffusion",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "LeanDiffusion", targets: ["LeanDiffusion"]),
        .library(name: "SafeTensors", targets: ["SafeTensors"]),
        .executable(name: "lean-diffusion", targets: ["LeanDiffusionCLI"]),
        .executable(name: "lean-bench", targets: ["LeanBench"]),
        .executable(name: "lean-bench-vae", targets: ["LeanBenchVAE"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.3.0"),
    ],
    targets: [
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", pkgConfig: nil,
                       providers: [.apt(["libdnnl-dev"]), .brew(["onednn"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG",
                       providers: [.apt(["libpng-dev"]), .brew(["libpng"])]),
        .target(name: "CPNGText", dependencies: ["CPNG"], path: "Sources/CPNGText"),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG",
                       providers: [.apt(["libjpeg62-turbo-dev"]), .brew(["jpeg-turbo"])]),
        .target(name: "CImageDecode", dependencies: ["CPNG", "CJPEG"], path: "Sources/CImageDecode",
                linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg")]),
        .target(name: "SafeTensors", path: "Sources/SafeTensors"),
        .target(name: "LeanCore", dependencies: ["CDNNL"], path: "Sources/LeanCore",
                swiftSettings: kernelSettings),
        .target(name: "LeanDiffusion",
                dependencies: ["LeanCore", "SafeTensors", "CPNG", "CPNGText", "CJPEG", "CImageDecode",
                               .product(name: "Logging", package: "swift-log")],
                path: "Sources/LeanDiffusion", swiftSettings: kernelSettings),
        .target(name: "LeanDiffusionServer",
                dependencies: ["LeanDiffusion",
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                               .product(name: "Logging", package: "swift-log")],
                path: "Sources/LeanDiffusionServer"),
        .executableTarget(name: "LeanDiffusionCLI",
                          dependencies: ["LeanDiffusion", "LeanDiffusionServer", "SafeTensors",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Logging", package: "swift-log")],
                          path: "Sources/LeanDiffusionCLI"),
        .executableTarget(name: "LeanBench", dependencies: ["LeanCore"], path: "bench/LeanBench",
                          swiftSettings: kernelSettings),
        .executableTarget(name: "LeanBenchVAE", dependencies: ["LeanDiffusion", "LeanCore"], path: "bench/VAEDecode",
                          swiftSettings: kernelSettings),
        .testTarget(name: "LeanCoreTests", dependencies: ["LeanCore", "SafeTensors"], path: "Tests/LeanCoreTests",
                    exclude: ["Fixtures"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors"], path: "Tests/SafeTensorsTests"),
        .testTarget(name: "LeanDiffusionTests", dependencies: ["LeanDiffusion"], path: "Tests/LeanDiffusionTests",
                    exclude: ["Fixtures"]),
        .testTarget(name: "LeanDiffusionServerTests",
                    dependencies: ["LeanDiffusionServer", "LeanDiffusion",
                                   .product(name: "Hummingbird", package: "hummingbird"),
                                   .product(name: "HTTPTypes", package: "swift-http-types")],
                    path: "Tests/LeanDiffusionServerTests"),
    ],
    swiftLanguageModes: [.v6]
)
