import Foundation
import LeanDiffusion
import XCTest

/// `lean-diffusion serve` as people run it: a child process on a free port, requests over real HTTP, SIGTERM.
final class ServeCLITests: XCTestCase {
    /// The server's image is the CLI's: the same pixels and the same `parameters` chunk as `generate` writes.
    func testServeGivesTheCLIsImage() throws {
        let server = try ServerProcess([])
        let r = try server.request("POST", "/sdapi/v1/txt2img", json: [
            "prompt": "a white diamond on a red background", "seed": 5, "steps": 7, "sampler_name": "DPM++ 2M"])
        XCTAssertEqual(r.status, 200, String(decoding: r.body, as: UTF8.self))
        let b64 = try XCTUnwrap((r.json?["images"] as? [String])?.first)
        let (served, servedText) = try decodePNG([UInt8](try XCTUnwrap(Data(base64Encoded: b64))))

        let out = NSTemporaryDirectory() + "serve-cli-\(UUID().uuidString).png"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let generate = Process()
        generate.executableURL = URL(fileURLWithPath: ServerProcess.binary)
        generate.arguments = ["generate", "--prompt", "a white diamond on a red background", "--seed", "5", "--steps", "7",
                              "--scheduler", "dpm++2m", "--quiet", "--output", out]
        try generate.run()
        generate.waitUntilExit()
        XCTAssertEqual(generate.terminationStatus, 0)
        XCTAssertEqual(served, try RGBImage.load(path: out))
        XCTAssertEqual(servedText, try PNGText.text("parameters", from: out))
        XCTAssert(servedText?.contains("Model: tiny-sd") == true, servedText ?? "")

        server.signal(SIGTERM)
        XCTAssertEqual(server.wait(timeout: 30), 0, server.stderr)
    }

    /// SIGTERM while a job runs: the job finishes (within --drain-seconds) and its client gets the images, new
    /// work is refused meanwhile, then the process exits 0.
    func testSIGTERMFinishesTheRunningJob() throws {
        let server = try ServerProcess(["--drain-seconds", "60"])
        nonisolated(unsafe) var answer: ServerProcess.HTTPResult?
        let finished = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            answer = try? server.request("POST", "/sdapi/v1/txt2img", json: ["prompt": "a blue square", "steps": 200])
            finished.signal()
        }
        // Wait until it runs, then ask the server to stop.
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let jobs = try server.request("GET", "/v1/jobs").json?["jobs"] as? [[String: Any]] ?? []
            if jobs.first?["state"] as? String == "running", (jobs.first?["step"] as? Int ?? 0) > 0 { break }
            usleep(20_000)
        }
        server.signal(SIGTERM)
        usleep(300_000)
        let refused = try? server.request("POST", "/v1/jobs", json: ["prompt": "late"])
        XCTAssertEqual(refused?.status, 503, "new work is refused while draining")
        XCTAssertEqual(finished.wait(timeout: .now() + 90), .success)
        XCTAssertEqual(answer?.status, 200, "the running job finished and was answered")
        XCTAssertEqual((answer?.json?["images"] as? [String])?.count, 1)
        XCTAssertEqual(server.wait(timeout: 30), 0, server.stderr)
    }

    /// Bad server options are named errors before anything loads.
    func testBadOptions() throws {
        for (args, expected) in [(["--port", "70000"], "--port"), (["--concurrency", "0"], "--concurrency"),
                                 (["--timeout", "nan"], "--timeout"), (["--model", "/nonexistent/model"], "/nonexistent/model"),
                                 (["--api-key", ""], "--api-key")] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: ServerProcess.binary)
            p.arguments = ["serve"] + (args.contains("--port") ? [] : ["--port", "0"]) + args
            let err = Pipe()
            p.standardError = err
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            XCTAssert([1, 64].contains(p.terminationStatus), "\(args): exit \(p.terminationStatus)")
            XCTAssert(text.contains(expected), "\(args): \(text)")
        }
    }
}
