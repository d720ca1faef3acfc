import XCTest
import LeanDiffusion
import SafeTensors

/// Bad input gets a clear error, never a crash or a silently wrong image.
final class BadInputTests: XCTestCase {
    static let sd1 = PipelineTests.fixtures.appendingPathComponent("sd1-tiny").path

    /// A scratch copy of the SD1 tiny pipeline that a test may damage.
    func scratchCopy() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lean-bad-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for item in ["model_index.json", "scheduler", "tokenizer", "text_encoder", "unet", "vae"] {
            try FileManager.default.copyItem(atPath: Self.sd1 + "/" + item, toPath: dir + "/" + item)
        }
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func assertError(_ expected: String, _ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) {
        do {
            try body()
            XCTFail("expected an error mentioning '\(expected)'", file: file, line: line)
        } catch {
            let text = "\(error)"
            XCTAssert(text.contains(expected), "error '\(text)' does not mention '\(expected)'", file: file, line: line)
        }
    }

    /// lean_diffusion.json is optional; a malformed one is named in the error rather than silently ignored.
    func testSamplingDefaultsFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lean-defaults-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertEqual(try SamplingDefaults(directory: dir), SamplingDefaults())
        let file = dir + "/" + SamplingDefaults.fileName
        func write(_ text: String) { FileManager.default.createFile(atPath: file, contents: Data(text.utf8)) }
        write(#"{"guidance_scale": 2.5}"#)
        XCTAssertEqual(try SamplingDefaults(directory: dir), SamplingDefaults(guidanceScale: 2.5))
        write(#"{"guidance_scale": "high"}"#)
        assertError("lean_diffusion.json") { _ = try SamplingDefaults(directory: dir) }
        write(#"{"num_inference_steps": 0}"#)
        assertError("num_inference_steps") { _ = try SamplingDefaults(directory: dir) }
        write("[1, 2")
        assertError("lean_diffusion.json") { _ = try SamplingDefaults(directory: dir) }
    }

    func testMissingFolder() {
        assertError("not found") { _ = try StableDiffusionPipeline(directory: "/nonexistent/model") }
    }

    func testMissingComponent() throws {
        let dir = try scratchCopy()
        try FileManager.default.removeItem(atPath: dir + "/unet")
        assertError("unet") { _ = try StableDiffusionPipeline(directory: dir) }
    }

    func testCorruptWeights() throws {
        let dir = try scratchCopy()
        let path = dir + "/vae/diffusion_pytorch_model.safetensors"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
        assertError("diffusion_pytorch_model.safetensors") { _ = try StableDiffusionPipeline(directory: dir) }
    }

    func testWrongShapeTensor() throws {
        let dir = try scratchCopy()
        let path = dir + "/vae/diffusion_pytorch_model.safetensors"
        let file = try SafeTensorsFile(path: path)
        var tensors: [SafeTensorsWriter.Tensor] = []
        for info in file.tensors {
            var shape = info.shape
            var data = try file.copyBytes(info.name)
            if info.name == "decoder.conv_out.bias" {
                shape = [shape[0] + 1]
                data += [UInt8](repeating: 0, count: info.dtype.byteSize)
            }
            tensors.append((name: info.name, dtype: info.dtype, shape: shape, data: data))
        }
        try SafeTensorsWriter.write(tensors, to: path)
        assertError("decoder.conv_out.bias") { _ = try StableDiffusionPipeline(directory: dir) }
    }

    func testBadRequests() throws {
        let pipe = try StableDiffusionPipeline(directory: Self.sd1)
        var r = GenerationRequest(prompt: "a red circle")
        r.width = 500
        r.height = 64
        r.steps = 2
        assertError("multiples of 8") { _ = try pipe.generate(r) }
        r.width = 64
        r.steps = 0
        assertError("steps") { _ = try pipe.generate(r) }
        // The empty prompt is valid: it is what diffusers encodes for "no negative prompt".
        var empty = GenerationRequest(prompt: "")
        empty.steps = 2
        empty.width = 64
        empty.height = 64
        empty.seed = 1
        let images = try pipe.generate(empty)
        XCTAssertEqual(images.count, 1)
        XCTAssertEqual(images[0].width, 64)
    }

    func testCancellation() throws {
        let pipe = try StableDiffusionPipeline(directory: Self.sd1)
        var r = GenerationRequest(prompt: "a red circle")
        r.steps = 5
        r.width = 64
        r.height = 64
        var calls = 0
        assertError("cancelled") {
            _ = try pipe.generate(r) { _ in
                calls += 1
                return calls < 2
            }
        }
        XCTAssertEqual(calls, 2)
    }

    /// Library entry points other than generate check their arguments too: decode's VAE options, output lists.
    func testDecodeAndOutputArguments() throws {
        let pipe = try StableDiffusionPipeline(directory: Self.sd1)
        pipe.vaeOptions = VAEOptions(tiling: true, tileSampleSize: 12)
        assertError("tileSampleSize") { _ = try pipe.decode([Float](repeating: 0, count: 4 * 8 * 8), shape: [1, 4, 8, 8]) }
        pipe.vaeOptions = VAEOptions(tiling: true, tileOverlap: 1.5)
        assertError("tileOverlap") { _ = try pipe.decode([Float](repeating: 0, count: 4 * 8 * 8), shape: [1, 4, 8, 8]) }
        let image = RGBImage(width: 1, height: 1, pixels: [0, 0, 0])
        assertError("one of each per image") { try GenerationOutput.write([image, image], to: ["/tmp/x.png"]) }
    }
}
