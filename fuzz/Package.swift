// swift-tools-version: 6.0
// libFuzzer target for the SafeTensors header parser. Built separately from the
// root package because it needs `-sanitize=fuzzer`; see scripts/fuzz-safetensors.sh.
import Foundation
import PackageDescription

// A path dependency's identity is its directory name, which depends on where the
// repository was cloned; derive it instead of hard-coding it.
let rootPackage = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "SafeTensorsFuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(
            name: "SafeTensorsFuzz",
            dependencies: [.product(name: "SafeTensors", package: rootPackage)]
        ),
        .executableTarget(
            name: "CheckpointFuzz",
            dependencies: [.product(name: "LeanDiffusion", package: rootPackage)]
        ),
    ]
)
