import XCTest
import LeanDiffusion
import SafeTensors
#if canImport(Glibc)
import Glibc
#endif

/// A FIFO, directory or device where a weights, config or tokenizer file should be is refused before `open` can
/// block (a FIFO used to hang `generate` and `inspect` forever).
final class FileTypeTests: XCTestCase {
    func replaceWithFIFO(_ path: String) throws {
        try FileManager.default.removeItem(atPath: path)
        XCTAssertEqual(mkfifo(path, 0o644), 0)
    }

    func testFIFOsAreRefused() throws {
        for file in ["unet/config.json", "vae/diffusion_pytorch_model.safetensors", "tokenizer/vocab.json",
                     "scheduler/scheduler_config.json", "model_index.json", "text_encoder/config.json"] {
            let dir = try ErrorTestSupport.scratchCopy(self)
            try replaceWithFIFO(dir + "/" + file)
            let start = ContinuousClock.now
            expectError(file, "FIFO") { _ = try StableDiffusionPipeline(directory: dir) }
            XCTAssertLessThan(ContinuousClock.now - start, .seconds(5))
        }
    }

    func testInspectAndSafeTensorsRefuseSpecialFiles() throws {
        let dir = try ErrorTestSupport.scratchCopy(self)
        let weights = dir + "/unet/diffusion_pytorch_model.safetensors"
        try replaceWithFIFO(weights)
        expectError("FIFO") { _ = try SafeTensorsFile(path: weights) }
        expectError("FIFO") { _ = try ModelInspector(path: weights) }
        expectError("FIFO") { _ = try ModelInspector(path: dir) }
        expectError("character device") { _ = try SafeTensorsFile(path: "/dev/zero") }
        XCTAssertThrowsError(try RegularFile.read(dir + "/unet")) { e in
            XCTAssertEqual((e as? FileReadError)?.reason, .notRegular(kind: "a directory"))
        }
        // The optional lean_diffusion.json too.
        XCTAssertEqual(mkfifo(dir + "/" + SamplingDefaults.fileName, 0o644), 0)
        expectError("lean_diffusion.json", "FIFO") { _ = try SamplingDefaults(directory: dir) }
    }
}
