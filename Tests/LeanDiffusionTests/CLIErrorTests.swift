import XCTest
import LeanDiffusion
#if canImport(Glibc)
import Glibc
#endif

/// The CLI exits with a message on stderr and a status in 1...127 for every bad input, never a signal.
/// Runs the built `.build/release/lean-diffusion` (skipped when it has not been built).
final class CLIErrorTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let binary = repo.appendingPathComponent(".build/release/lean-diffusion").path
    let model = ErrorTestSupport.sd1

    struct Run { let status: Int32; let signalled: Bool; let stderr: String }

    /// Runs the CLI with a watchdog (a hang is a failure, not a stuck suite).
    func run(_ args: [String], environment: [String: String] = [:], timeout: Double = 60) throws -> Run {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: Self.binary), "build lean-diffusion first")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = args
        if !environment.isEmpty {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
            XCTFail("lean-diffusion \(args.joined(separator: " ")) did not finish in \(timeout) s")
        }
        p.waitUntilExit()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return Run(status: p.terminationStatus, signalled: p.terminationReason == .uncaughtSignal, stderr: text)
    }

    func expectFailure(_ args: [String], mentions expected: String..., line: UInt = #line) throws {
        let r = try run(args)
        XCTAssertFalse(r.signalled, "killed by signal \(r.status): \(args)", line: line)
        XCTAssert((1...127).contains(r.status), "exit status \(r.status) for \(args)", line: line)
        for e in expected { XCTAssert(r.stderr.contains(e), "stderr '\(r.stderr)' does not mention '\(e)'", line: line) }
    }

    /// bf16 on a CPU without AVX-512 (oneDNN capped to AVX2 here, as on such a machine): a named error before any
    /// weight is read, not a trap in the first bf16 kernel.
    func testBF16WithoutAVX512IsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lean-cli-isa-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let args = ["generate", "--model", model, "--prompt", "x", "--steps", "2", "--quiet", "--output", dir + "/o.png"]
        let r = try run(args + ["--dtype", "bf16"], environment: ["ONEDNN_MAX_CPU_ISA": "AVX2"])
        XCTAssertFalse(r.signalled, r.stderr)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("AVX-512") && r.stderr.contains("avx2") && r.stderr.contains("fp16"), r.stderr)
        let ok = try run(args + ["--dtype", "fp16"], environment: ["ONEDNN_MAX_CPU_ISA": "AVX2"])
        XCTAssertEqual(ok.status, 0, "fp16 runs on AVX2: \(ok.stderr)")
        if !CPUCapabilities.supports(.bf16) {
            print("this CPU has no AVX-512 (oneDNN: \(CPUCapabilities.isaName)): the bf16 cases of the parity tests are skipped")
        }
    }

    func testBadInputsExitWithAMessage() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lean-cli-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/out.png"
        let base = ["generate", "--model", model, "--prompt", "a red circle", "--quiet", "--output", out]
        try expectFailure(base + ["--steps", "1000"], mentions: "--steps", "1...999")
        try expectFailure(base + ["--guidance", "nan"], mentions: "--guidance", "finite")
        try expectFailure(base + ["--guidance", "inf"], mentions: "--guidance")
        try expectFailure(base + ["--offload", "sequential", "--offload-budget", "inf"], mentions: "--offload-budget")
        try expectFailure(base + ["--offload", "sequential", "--offload-budget", "1e300"], mentions: "--offload-budget")
        try expectFailure(base + ["--clip-skip", "7", "--steps", "2"], mentions: "--clip-skip")
        try expectFailure(base + ["--width", "100000", "--height", "100000"], mentions: "needs about", "is available")
        try expectFailure(base + ["--width", "-8"], mentions: "--width")
        try expectFailure(base + ["--count", "0"], mentions: "--count")
        try expectFailure(["generate", "--model", model, "--prompt", "x", "--output", "/nonexistent-dir/o.png"],
                          mentions: "/nonexistent-dir/o.png", "does not exist")
        try expectFailure(base + ["--report", "/nonexistent-dir/r.json"], mentions: "/nonexistent-dir/r.json")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing is generated before a bad output fails")

        // A FIFO in the model folder: an error, not a hang.
        let scratch = try ErrorTestSupport.scratchCopy(self)
        try FileManager.default.removeItem(atPath: scratch + "/unet/config.json")
        XCTAssertEqual(mkfifo(scratch + "/unet/config.json", 0o644), 0)
        try expectFailure(["generate", "--model", scratch, "--prompt", "x", "--output", out], mentions: "FIFO")
        try expectFailure(["inspect", scratch + "/unet/config.json"], mentions: "FIFO")

        // Damaged weights: a named error, not SIGILL.
        let damaged = try ErrorTestSupport.scratchCopy(self)
        try ErrorTestSupport.editTensor(damaged + "/vae/diffusion_pytorch_model.safetensors", "decoder.conv_out.bias") { $0[0] = .nan }
        try expectFailure(["generate", "--model", damaged, "--prompt", "x", "--steps", "2", "--output", out],
                          mentions: "the VAE decoder produced NaN/Inf")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))

        // And a good run still works and writes the image and the report.
        let ok = try run(base + ["--steps", "2", "--report", dir + "/r.json"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/r.json"))
    }
}
