import Foundation
import Hummingbird
import LeanDiffusion
import LeanDiffusionServer
import XCTest

/// Asynchronous jobs, cancellation, the bounded queue, timeouts and draining.
final class ServerJobTests: XCTestCase {
    /// POST /v1/jobs -> 202 and a Location; the job runs to done; its result and PNGs are fetched; the event
    /// stream carries progress and ends with `done`.
    func testJobLifecycle() async throws {
        try await ServerFixture.withServer { client, _ in
            let r = try await client.post("/v1/jobs", ["prompt": "two black circles", "steps": 8, "seed": 3, "batch_size": 2,
                                                         "sampler_name": "DDIM"])
            XCTAssertEqual(r.status, .accepted, text(r))
            let job = try XCTUnwrap(object(r))
            let id = try XCTUnwrap(job["id"] as? String)
            XCTAssertEqual(r.headers[.location], "/v1/jobs/\(id)")
            XCTAssert(["queued", "running"].contains(job["state"] as? String ?? ""), "\(job)")
            XCTAssertEqual(job["total"] as? Int, 8)

            let events = try await client.get("/v1/jobs/\(id)/events")
            XCTAssertEqual(events.headers[.contentType], "text/event-stream")
            let stream = text(events)
            XCTAssert(stream.contains("event: progress\ndata: {"), stream)
            XCTAssert(stream.hasSuffix("\n\n") && stream.contains("event: done\ndata: {"), stream)
            let steps = stream.split(separator: "\n").filter { $0.hasPrefix("data:") }.compactMap { line -> Int? in
                (try? JSONSerialization.jsonObject(with: Data(line.dropFirst(5).utf8)) as? [String: Any])?["step"] as? Int
            }
            XCTAssertEqual(steps.last, 8)
            XCTAssertEqual(steps, steps.sorted(), "steps only go up: \(steps)")

            let done = try await client.waitForJob(id)
            XCTAssertEqual(done["state"] as? String, "done")
            XCTAssertEqual(done["images"] as? Int, 2)
            XCTAssertEqual(done["eta_seconds"] as? Double, 0)
            let r1 = try await client.get("/v1/jobs/\(id)/result")
            let result = try XCTUnwrap(object(r1))
            let images = try pngs(result)
            XCTAssertEqual(images.count, 2)
            let png = try await client.get("/v1/jobs/\(id)/images/1")
            XCTAssertEqual(png.headers[.contentType], "image/png")
            XCTAssertEqual([UInt8](png.body.readableBytesView), images[1])
            let r2 = try await client.get("/v1/jobs/\(id)/images/2").status
            XCTAssertEqual(r2, .notFound)
            let r3 = try await client.get("/v1/jobs")
            let list = try XCTUnwrap(object(r3)?["jobs"] as? [[String: Any]])
            XCTAssertEqual(list.first?["id"] as? String, id)
            // The events of a finished job: one final event.
            let r4 = try await client.get("/v1/jobs/\(id)/events")
            XCTAssertEqual(text(r4).components(separatedBy: "event:").count, 2)
        }
    }

    /// DELETE stops a running job at its next step and a queued one at once; results of either are a 409.
    func testCancel() async throws {
        try await ServerFixture.withServer { client, _ in
            let r5 = try await client.post("/v1/jobs", ["prompt": "x", "steps": 900])
            let running = try XCTUnwrap(object(r5)?["id"] as? String)
            let r6 = try await client.post("/v1/jobs", ["prompt": "y", "steps": 900])
            let queued = try XCTUnwrap(object(r6)?["id"] as? String)
            try await client.waitUntilRunning(running)
            let r7 = try await client.get("/v1/jobs/\(queued)")
            let q = try XCTUnwrap(object(r7))
            XCTAssertEqual(q["state"] as? String, "queued")
            XCTAssertEqual(q["position"] as? Int, 0)
            XCTAssertNotNil(q["eta_seconds"] as? Double, "a queued job's ETA comes from the running job's step time")

            let r8 = try await client.execute(uri: "/v1/jobs/\(queued)", method: .delete)
            XCTAssertEqual(object(r8)?["state"] as? String, "cancelled")
            _ = try await client.execute(uri: "/v1/jobs/\(running)", method: .delete)
            let stopped = try await client.waitForJob(running, timeout: 20)
            XCTAssertEqual(stopped["state"] as? String, "cancelled")
            XCTAssertLessThan(stopped["step"] as? Int ?? 900, 900)
            let r9 = try await client.get("/v1/jobs/\(running)/result").status
            XCTAssertEqual(r9, .conflict)
            // The worker is free again.
            let after = try await client.post("/sdapi/v1/txt2img", ["prompt": "z", "steps": 2])
            XCTAssertEqual(after.status, .ok, text(after))
        }
    }

    /// A full queue answers 429 with Retry-After; nothing already accepted is lost.
    func testQueueFull() async throws {
        try await ServerFixture.withServer({ $0.queueSize = 1 }) { client, _ in
            let r10 = try await client.post("/v1/jobs", ["prompt": "a", "steps": 60])
            let a = try XCTUnwrap(object(r10)?["id"] as? String)
            try await client.waitUntilRunning(a)
            let r11 = try await client.post("/v1/jobs", ["prompt": "b", "steps": 2])
            let b = try XCTUnwrap(object(r11)?["id"] as? String)
            let c = try await client.post("/v1/jobs", ["prompt": "c", "steps": 2])
            XCTAssertEqual(c.status, .tooManyRequests, text(c))
            let retry = try XCTUnwrap(c.headers[.retryAfter].flatMap { Int($0) })
            XCTAssertGreaterThanOrEqual(retry, 1)
            let sync = try await client.post("/sdapi/v1/txt2img", ["prompt": "d", "steps": 2])
            XCTAssertEqual(sync.status, .tooManyRequests)
            let r12 = try await client.waitForJob(a)["state"] as? String
            XCTAssertEqual(r12, "done")
            let r13 = try await client.waitForJob(b)["state"] as? String
            XCTAssertEqual(r13, "done")
            let metrics = text(try await client.get("/metrics"))
            XCTAssert(metrics.contains("lean_diffusion_jobs_rejected_total 2"), metrics)
        }
    }

    /// A job past --timeout stops at its next step and fails as timed out; a synchronous request answers 504.
    func testTimeout() async throws {
        try await ServerFixture.withServer({ $0.timeoutSeconds = 0.5 }) { client, _ in
            let r = try await client.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 900])
            XCTAssertEqual(r.status, .gatewayTimeout, text(r))
            XCTAssert(text(r).contains("timed out"), text(r))
            let r14 = try await client.get("/v1/jobs")
            let jobs = try XCTUnwrap(object(r14)?["jobs"] as? [[String: Any]])
            XCTAssertEqual(jobs.first?["state"] as? String, "failed")
        }
    }

    /// Draining (what SIGTERM starts): new work gets 503 and /health says draining; queued and running jobs get the
    /// drain time, then are cancelled.
    func testDrain() async throws {
        try await ServerFixture.withServer { client, server in
            let r15 = try await client.post("/v1/jobs", ["prompt": "a", "steps": 5])
            let short = try XCTUnwrap(object(r15)?["id"] as? String)
            let r16 = try await client.post("/v1/jobs", ["prompt": "b", "steps": 900])
            let long = try XCTUnwrap(object(r16)?["id"] as? String)
            let drained = Task { await server.drain(seconds: 1.5) }
            try await Task.sleep(for: .milliseconds(200))
            let r17 = try await client.post("/v1/jobs", ["prompt": "c"]).status
            XCTAssertEqual(r17, .serviceUnavailable)
            let r18 = try await client.get("/health").status
            XCTAssertEqual(r18, .serviceUnavailable)
            await drained.value
            let r19 = try await client.waitForJob(short)["state"] as? String
            XCTAssertEqual(r19, "done", "finished within the drain time")
            let cancelled = try await client.waitForJob(long)
            XCTAssertEqual(cancelled["state"] as? String, "cancelled")
            XCTAssert((cancelled["error"] as? String ?? "").contains("shut down"), "\(cancelled)")
        }
    }

    /// Two workers run two jobs at once.
    func testConcurrency() async throws {
        try await ServerFixture.withServer({ $0.concurrency = 2 }) { client, _ in
            let r20 = try await client.post("/v1/jobs", ["prompt": "a", "steps": 900])
            let a = try XCTUnwrap(object(r20)?["id"] as? String)
            let r21 = try await client.post("/v1/jobs", ["prompt": "b", "steps": 900])
            let b = try XCTUnwrap(object(r21)?["id"] as? String)
            try await client.waitUntilRunning(a)
            try await client.waitUntilRunning(b)
            let r22 = try await client.get("/metrics")
            XCTAssert(text(r22).contains("lean_diffusion_jobs_running 2"))
            for id in [a, b] { _ = try await client.execute(uri: "/v1/jobs/\(id)", method: .delete) }
            for id in [a, b] { let r23 = try await client.waitForJob(id)["state"] as? String; XCTAssertEqual(r23, "cancelled") }
        }
    }
}
