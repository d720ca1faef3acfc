import XCTest
import Dispatch
@testable import LeanDiffusion
import LeanCore

/// Each pipeline owns its runtime context: two at once compute as they do alone, and state that used to grow or be
/// abandoned (packed copies per input size, plans under model offload) stays bounded and replayed.
final class RuntimeContextTests: XCTestCase {
    static let sd1 = PipelineTests.fixtures.appendingPathComponent("sd1-tiny").path

    /// Lets a test hand non-Sendable values to threads it joins before reading them.
    final class Box<T>: @unchecked Sendable {  // written by one thread, read after the join
        var value: T
        init(_ value: T) { self.value = value }
    }

    /// Two pipelines generating at the same time on two threads give the images each gives alone, and both
    /// replay their planned UNets from their own arenas without a single fallback.
    func testTwoPipelinesAtOnceMatchAloneAndReplayPlans() throws {
        let request = PipelineTests.tinyRequest(steps: 8)
        var other = request
        other.prompts = ["a blue sphere on a table"]
        other.seed = 7
        let requests = [request, other]
        let alone = try requests.map { try StableDiffusionPipeline(directory: Self.sd1).generate($0) }
        for _ in 0..<3 {
            let pipes = Box(try requests.map { _ in try StableDiffusionPipeline(directory: Self.sd1) })
            let results = Box([Result<[RGBImage], Error>?](repeating: nil, count: 2))
            let lock = NSLock()
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                let r = Result { try pipes.value[i].generate(requests[i]) }
                lock.lock(); results.value[i] = r; lock.unlock()
            }
            for i in 0..<2 {
                XCTAssertEqual(try XCTUnwrap(results.value[i]).get(), alone[i], "pipeline \(i) differs from its lone run")
                let plan = try XCTUnwrap(pipes.value[i].unetPlans.values.first)
                XCTAssertEqual(plan.phase, .replaying, "pipeline \(i)'s plan")
                XCTAssertGreaterThan(plan.replays, 0, "pipeline \(i) never replayed")
                XCTAssertEqual(plan.fallbacks, 0, "pipeline \(i)'s replays fell back")
            }
        }
    }

    /// Decoding at five latent sizes in a row keeps the VAE's weight copies bounded: they are keyed by layout, not
    /// by input shape, so a second round over the same five sizes adds nothing, the fifth size adds nothing to the
    /// fourth, and no weight holds more than two packed copies (one per oneDNN kernel family; see
    /// `DNNL.descriptor`). Keyed by input shape they grew with every size (3.24 -> 5.23 -> 7.21 MB).
    func testDecodingAtFiveSizesKeepsWeightBytes() throws {
        let pipe = try StableDiffusionPipeline(directory: Self.sd1)
        let vae = pipe.offloadController.registry(.vae)
        var resident: [Int] = []
        let sizes = [(8, 8), (12, 10), (6, 14), (16, 16), (10, 6)]
        for (h, w) in sizes + sizes {
            let z = (0..<(4 * h * w)).map { sin(Float($0) * 0.37) }
            let images = try pipe.decode(z, shape: [1, 4, h, w])
            XCTAssertEqual([images[0].width, images[0].height], [w * 8, h * 8])
            resident.append(vae.residentBytes)
        }
        let copies = vae.storages.map { $0.parameter?.derivedCopyCount ?? 0 }
        print("VAE resident weight bytes per size \(resident), most copies of one weight \(copies.max() ?? 0), "
              + "primitives \(pipe.context.cachedPrimitiveCount)")
        XCTAssertEqual(resident[4], resident[3], "the fifth size added weight copies")
        XCTAssertEqual(resident[9], resident[4], "a second round over the same sizes added weight copies")
        XCTAssertLessThanOrEqual(copies.max() ?? 0, 2)
        XCTAssertLessThan(Double(resident[4]), 1.5 * Double(resident[0]))
    }

    /// A primitive cache far smaller than the model needs evicts (and destroys) primitives and computes the same.
    func testBoundedPrimitiveCache() throws {
        let reference = try StableDiffusionPipeline(directory: Self.sd1).generate(PipelineTests.tinyRequest(steps: 3))
        var settings = RuntimeSettings()
        settings.primitiveCacheCapacity = 4
        let pipe = try StableDiffusionPipeline(directory: Self.sd1, context: RuntimeContext(settings: settings))
        XCTAssertEqual(try pipe.generate(PipelineTests.tinyRequest(steps: 3)), reference)
        XCTAssertLessThanOrEqual(pipe.context.cachedPrimitiveCount, 4)
        XCTAssertGreaterThan(pipe.context.evictedPrimitiveCount, 0)
    }

    /// Under model offload the UNet's weights are evicted after every run and packed again inside the next run's
    /// replayed call; weight copies never come from the plan, so it keeps replaying with no fallback.
    func testModelOffloadKeepsReplayingPlan() throws {
        let pipe = try StableDiffusionPipeline(directory: Self.sd1, offload: .model)
        let request = PipelineTests.tinyRequest(steps: 6)
        let first = try pipe.generate(request)
        for _ in 0..<2 { XCTAssertEqual(try pipe.generate(request), first) }
        let plan = try XCTUnwrap(pipe.unetPlans.values.first)
        XCTAssertEqual(plan.phase, .replaying)
        XCTAssertEqual(plan.fallbacks, 0)
        XCTAssertGreaterThan(plan.replays, 10)
    }

    /// Under sequential offload weights (and their packed copies) come and go inside every UNet call; none of it
    /// is an activation, so the plan (opt-in there) replays with no fallback and the image is the resident one.
    func testSequentialOffloadReplaysPlan() throws {
        let request = PipelineTests.tinyRequest(steps: 6)
        let reference = try StableDiffusionPipeline(directory: Self.sd1).generate(request)
        let pipe = try StableDiffusionPipeline(directory: Self.sd1, offload: .sequential, streamingBudgetBytes: 400_000)
        pipe.planUnderSequentialOffload = true
        XCTAssertEqual(try pipe.generate(request), reference)
        XCTAssertEqual(try pipe.generate(request), reference)
        let plan = try XCTUnwrap(pipe.unetPlans.values.first)
        XCTAssertEqual(plan.phase, .replaying)
        XCTAssertEqual(plan.fallbacks, 0)
        XCTAssertGreaterThan(plan.replays, 8)
    }

    /// Each pipeline's tracker counts its own bytes: a second pipeline's load does not move the first's figures.
    func testTrackersAreSeparate() throws {
        let a = try StableDiffusionPipeline(directory: Self.sd1)
        let before = a.context.tracker.current(.cpu)
        XCTAssertGreaterThan(before, 0)
        let b = try StableDiffusionPipeline(directory: Self.sd1)
        _ = try b.generate(PipelineTests.tinyRequest(steps: 2))
        XCTAssertEqual(a.context.tracker.current(.cpu), before)
        XCTAssertGreaterThan(b.context.tracker.current(.cpu), 0)
    }

    /// A weight file that shrinks under a running pipeline (model offload re-reads it) is a thrown error naming
    /// the weight, not a trap; the run after the file is restored works again.
    func testWeightReadFailureIsThrown() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lean-ctx-\(UUID())").path
        try FileManager.default.copyItem(atPath: Self.sd1, toPath: dir)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let pipe = try StableDiffusionPipeline(directory: dir, offload: .model)
        let request = PipelineTests.tinyRequest(steps: 2)
        let reference = try pipe.generate(request)
        let path = dir + "/unet/diffusion_pytorch_model.safetensors"
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        let fd = open(path, O_WRONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(ftruncate(fd, off_t(original.count / 2)), 0)
        close(fd)
        XCTAssertThrowsError(try pipe.generate(request)) { error in
            XCTAssertTrue("\(error)".contains("cannot read weight"), "\(error)")
        }
        // Restore the bytes in place (the pipeline holds the file open).
        let wfd = open(path, O_WRONLY)
        _ = original.withUnsafeBytes { pwrite(wfd, $0.baseAddress!, original.count, 0) }
        close(wfd)
        XCTAssertEqual(try pipe.generate(request), reference)
    }
}

/// The plan's replay checks, on a hand-made call.
final class ExecutionPlanReplayTests: XCTestCase {
    /// Allocates `sizes` (each freed before the next but the last), returning the last storage's bytes.
    func call(_ sizes: [Int], keep: Int? = nil) -> [Tensor] {
        var kept: [Tensor] = []
        for (i, n) in sizes.enumerated() {
            let t = Tensor(shape: [n])
            t.floatPointer().initialize(repeating: Float(i), count: n)
            if i == keep || i == sizes.count - 1 { kept.append(t) }
        }
        return kept
    }

    func testReplayFallsBackPerAllocationAndRecordsAgain() {
        let context = RuntimeContext()
        let messages = RuntimeContextTests.Box<[String]>([])
        let lock = NSLock()
        let plan = ExecutionPlan(log: { m in lock.lock(); messages.value.append(m); lock.unlock() })
        context.run {
            _ = plan.run { call([256, 512, 256, 64]) }  // warm-up
            _ = plan.run { call([256, 512, 256, 64]) }  // recording
            XCTAssertEqual(plan.phase, .replaying)
            XCTAssertGreaterThan(plan.arenaBytes, 0)
            _ = plan.run { call([256, 512, 256, 64]) }
            XCTAssertEqual(plan.fallbacks, 0)
            // Another sequence: the odd allocation gets its own memory, the values stay right.
            let out = plan.run { call([256, 1000, 256, 64]) }
            XCTAssertEqual(out.last?.toFloats(), [Float](repeating: 3, count: 64))
            XCTAssertGreaterThan(plan.fallbacks, 0)
            XCTAssertEqual(plan.phase, .recording, "a call that fell back makes the plan record again")
            _ = plan.run { call([256, 1000, 256, 64]) }
            let before = plan.fallbacks
            _ = plan.run { call([256, 1000, 256, 64]) }
            XCTAssertEqual(plan.fallbacks, before)
            XCTAssertEqual(plan.phase, .replaying)
            // A buffer kept past its recorded lifetime keeps its bytes: the slot overlapping it is not handed out.
            let kept = plan.run { call([256, 1000, 256, 64], keep: 0) }
            XCTAssertEqual(kept.first?.toFloats(), [Float](repeating: 0, count: 256))
        }
        XCTAssertFalse(messages.value.isEmpty)
        XCTAssertTrue(messages.value[0].contains("fell back"), messages.value[0])
    }
}
