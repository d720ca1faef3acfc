import XCTest
@testable import LeanDiffusion
import LeanCore
import SafeTensors

/// Offload policies around the models: the same pixels in every mode, bounded resident weights when streaming,
/// exact evict/reload round trips, and a report with every phase.
final class OffloadTests: XCTestCase {
    static let sd1 = PipelineTests.fixtures.appendingPathComponent("sd1-tiny").path

    static func request(steps: Int = 4) -> GenerationRequest {
        var r = GenerationRequest(prompt: "a photo of a red cube", negativePrompt: "blurry")
        r.steps = steps
        r.seed = 42
        r.guidanceScale = 7.5
        return r
    }

    /// Model and sequential offload compute exactly the resident mode's numbers: the images are pixel-identical.
    func testOffloadModesGiveIdenticalImages() throws {
        let resident = try StableDiffusionPipeline(directory: Self.sd1, offload: .none)
        let reference = try resident.generate(Self.request())
        for mode in [OffloadMode.model, .sequential] {
            let pipe = try StableDiffusionPipeline(directory: Self.sd1, offload: mode)
            // Twice: the second run reloads what the first evicted.
            for run in 0..<2 {
                let images = try pipe.generate(Self.request())
                XCTAssertEqual(images, reference, "\(mode) run \(run)")
            }
        }
    }

    /// Under model offload each component is evicted once it is done: nothing stays resident after a run, and
    /// the UNet's weights are gone before the decode.
    func testModelOffloadEvictsFinishedComponents() throws {
        let pipe = try StableDiffusionPipeline(directory: Self.sd1, offload: .model)
        let unet = pipe.offloadController.registry(.unet)
        XCTAssertEqual(unet.residentBytes, 0, "model offload loads lazily")
        var loadsAfterStep: [Int] = []
        _ = try pipe.generate(Self.request()) { _ in
            loadsAfterStep.append(unet.storages.reduce(0) { $0 + $1.loadCount })
            return true
        }
        print("offload model: UNet weight loads after each step \(loadsAfterStep)")
        XCTAssertEqual(Set(loadsAfterStep.dropFirst()).count, 1, "no reloads after the first step")
        for c in OffloadController.Component.allCases {
            XCTAssertEqual(pipe.offloadController.registry(c).residentBytes, 0, "\(c) resident after the run")
        }
    }

    /// Sequential offload keeps the UNet's resident weight bytes (streamed weights with their packed copies, plus the
    /// pinned 1-D parameters) under 40% of the UNet's weight bytes throughout the denoising loop.
    func testSequentialOffloadBoundsResidentWeights() throws {
        // The resident run first, released before the streamed one: the tracker is process-wide.
        let (reference, residentStepPeak, unetBytes, pinned): ([RGBImage], Int, Int, Int) = try {
            let resident = try StableDiffusionPipeline(directory: Self.sd1, offload: .none)
            let images = try resident.generate(Self.request())
            let unet = resident.offloadController.registry(.unet)
            let steps = resident.lastReport!.phases.filter { $0.name.hasPrefix("step") }.map { $0.peakTrackedBytes["cpu"]! }
            return (images, steps.max()!, unet.totalBytes,
                    unet.weights.filter { $0.shape.count <= 1 }.reduce(0) { $0 + $1.storage.byteCount })
        }()
        let budget = unetBytes / 8
        let pipe = try StableDiffusionPipeline(directory: Self.sd1, offload: .sequential, streamingBudgetBytes: budget)
        XCTAssertEqual(try pipe.generate(Self.request()), reference)
        let report = try XCTUnwrap(pipe.lastReport)
        let peak = try XCTUnwrap(report.streamedPeakResidentBytes)
        let stats = try XCTUnwrap(pipe.weightStreamer?.stats)
        let streamedStepPeak = report.phases.filter { $0.name.hasPrefix("step") }.map { $0.peakTrackedBytes["cpu"]! }.max()!
        print("offload sequential: UNet \(unetBytes) B, budget \(budget) B, streamed peak \(peak) B + pinned \(pinned) B; "
              + "tracked step peak resident \(residentStepPeak) B vs sequential \(streamedStepPeak) B; "
              + "demand loads \(stats.demandLoads), prefetch loads \(stats.prefetchLoads), evictions \(stats.evictions)")
        XCTAssertLessThan(peak + pinned, unetBytes * 4 / 10)
        XCTAssertLessThan(streamedStepPeak, residentStepPeak)
        XCTAssertGreaterThan(stats.prefetchLoads, 0, "the prefetcher loaded ahead")
    }

    /// Evicting an evictable weight frees exactly its bytes (tracked) and reading it back gives the same bytes.
    func testEvictReloadRoundTripsBytes() throws {
        let registry = WeightRegistry()
        let loader = try WeightLoader(componentDirectory: Self.sd1 + "/unet").registering(in: registry)
        let plain = try WeightLoader(componentDirectory: Self.sd1 + "/unet")
        for (name, shape) in [("conv_in.weight", [32, 4, 3, 3]), ("conv_in.bias", [32])] {
            guard let expectedShape = plain.shape(name) else { return XCTFail("no \(name)") }
            XCTAssertEqual(expectedShape, shape)
            let expected = try plain.tensor(name, shape: shape).toFloats()
            let t = try loader.tensor(name, shape: shape)
            XCTAssertFalse(t.storage.isResident)
            XCTAssertEqual(t.toFloats(), expected)
            XCTAssertTrue(t.storage.isResident)
            XCTAssertEqual(t.storage.evict(), t.byteCount)
            // (The shared tracker's total is not compared here: other tests' prefetch threads may be allocating.)
            XCTAssertFalse(t.storage.isResident)
            XCTAssertEqual(t.toFloats(), expected)
            XCTAssertEqual(t.storage.loadCount, 2)
        }
        // Converting sources (f32 file to bf16 weights) reload identically too.
        let bf = try WeightLoader(componentDirectory: Self.sd1 + "/unet", dtype: .bf16).registering(in: registry)
        let w = try bf.tensor("conv_in.weight", shape: [32, 4, 3, 3])
        let once = w.toFloats()
        w.storage.evict()
        XCTAssertEqual(w.toFloats(), once)
        XCTAssertEqual(once, try plain.tensor("conv_in.weight", shape: [32, 4, 3, 3]).converted(to: .bf16).toFloats())
    }

    /// Under model and sequential offload CLIP's token embedding is never loaded whole: its lookup reads the 77
    /// rows it needs from the file (a 152 MB table in SD1.5 fp32), and the prompt embeddings stay exact.
    func testTokenEmbeddingIsReadByRowsWhenOffloaded() throws {
        let reference = try StableDiffusionPipeline(directory: Self.sd1, offload: .none).generate(Self.request(steps: 2))
        for mode in [OffloadMode.model, .sequential] {
            let pipe = try StableDiffusionPipeline(directory: Self.sd1, offload: mode)
            XCTAssertEqual(try pipe.generate(Self.request(steps: 2)), reference, "\(mode)")
            let table = try XCTUnwrap(pipe.offloadController.registry(.textEncoder).weights
                .first { $0.key.hasSuffix("token_embedding.weight") })
            XCTAssertEqual(table.storage.loadCount, 0, "\(mode): the token embedding was loaded whole")
            XCTAssertFalse(table.storage.isResident)
        }
    }

    /// A range read of an evicted weight gives exactly those bytes of the full load (same type and converting
    /// f32 -> bf16) and leaves the weight evicted.
    func testRangeReadOfEvictedWeight() throws {
        for dtype in [DType.f32, .bf16] {
            let registry = WeightRegistry()
            let loader = try WeightLoader(componentDirectory: Self.sd1 + "/text_encoder", dtype: dtype).registering(in: registry)
            let name = loader.shape("text_model.embeddings.token_embedding.weight") != nil
                ? "text_model.embeddings.token_embedding.weight" : "embeddings.token_embedding.weight"
            let shape = try XCTUnwrap(loader.shape(name))
            let t = try loader.tensor(name, shape: shape)
            let row = shape[1] * dtype.byteSize
            var rows = [UInt8](repeating: 0, count: 3 * row)
            rows.withUnsafeMutableBytes { t.storage.copyBytes(at: 7 * row, into: $0) }
            XCTAssertFalse(t.storage.isResident)
            XCTAssertEqual(t.storage.loadCount, 0)
            let full = [UInt8](UnsafeRawBufferPointer(start: t.raw, count: t.byteCount))
            XCTAssertEqual(rows, Array(full[(7 * row)..<(10 * row)]), "\(dtype)")
        }
    }

    /// Sequential offload spills packed weight copies to its scratch file on first eviction and later reads those
    /// back: a second run re-reads no weight from the checkpoint (no conversion, no reorder), with the same image.
    func testSequentialOffloadRereadsSpilledPackedCopies() throws {
        let reference = try StableDiffusionPipeline(directory: Self.sd1, offload: .none).generate(Self.request(steps: 3))
        let pipe = try StableDiffusionPipeline(directory: Self.sd1, offload: .sequential, streamingBudgetBytes: 200_000)
        XCTAssertEqual(try pipe.generate(Self.request(steps: 3)), reference)
        let spill = try XCTUnwrap(pipe.weightStreamer?.spill, "no writable TMPDIR?")
        XCTAssertGreaterThan(spill.byteCount, 0)
        let plain = OffloadController.Component.allCases.flatMap { pipe.offloadController.registry($0).storages }
        let loadsAfterFirst = plain.reduce(0) { $0 + $1.loadCount }
        let spilledAfterFirst = spill.byteCount
        XCTAssertEqual(try pipe.generate(Self.request(steps: 3)), reference)
        XCTAssertEqual(plain.reduce(0) { $0 + $1.loadCount }, loadsAfterFirst, "weights re-read from the checkpoint")
        XCTAssertEqual(spill.byteCount, spilledAfterFirst, "a copy was spilled twice")
    }

    /// Resident mode drops a weight's plain bytes once oneDNN's packed copy exists; the model still computes the same.
    func testResidentModeDropsPlainBytesAfterPacking() throws {
        let pipe = try StableDiffusionPipeline(directory: Self.sd1, offload: .none)
        let unet = pipe.offloadController.registry(.unet)
        let loaded = unet.residentBytes
        _ = try pipe.generate(Self.request(steps: 2))
        let packedOnly = unet.weights.filter { !$0.storage.isResident }
        let after = unet.residentBytes
        print("offload none: UNet resident \(loaded) B after load, \(after) B after a run (\(packedOnly.count) plain copies dropped)")
        XCTAssertFalse(packedOnly.isEmpty)
        // Without the drop every packed weight would hold plain + packed bytes.
        let withoutDrop = after + packedOnly.reduce(0) { $0 + $1.storage.byteCount }
        XCTAssertLessThan(after, withoutDrop)
    }

    /// The report has the load, text encoding, every step and the decode, and round-trips through JSON.
    func testReportHasEveryPhase() throws {
        let pipe = try StableDiffusionPipeline(directory: Self.sd1, offload: .sequential)
        _ = try pipe.generate(Self.request(steps: 3))
        let report = try XCTUnwrap(pipe.lastReport)
        // PNDM's PRK warm-up makes 3 steps 4 UNet calls; each is a phase.
        XCTAssertEqual(report.phases.map(\.name),
                       ["load", "text encoding"] + (1...report.steps).map { "step \($0)" } + ["decode"])
        for p in report.phases {
            XCTAssertGreaterThanOrEqual(p.seconds, 0)
            XCTAssertNotNil(p.peakTrackedBytes["cpu"])
            XCTAssertGreaterThan(p.peakRSSBytes, 0)
            XCTAssertGreaterThan(p.endRSSBytes, 0)
            XCTAssertGreaterThanOrEqual(p.peakRSSBytes, p.endRSSBytes)
        }
        let data = try report.jsonData()
        XCTAssertEqual(try JSONDecoder().decode(RunReport.self, from: data), report)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(object["offload"] as? String, "sequential")
        XCTAssertEqual((object["phases"] as? [Any])?.count, report.steps + 3)
    }
}
