import XCTest
@testable import LeanDiffusion
import SafeTensors

/// The diffusers folder layout: weight file names, variants, shards with and without an index, and a pipeline
/// loaded from sharded variant files computing what the single-file folder computes.
final class DiffusersFolderTests: XCTestCase {
    func testWeightFileNames() {
        func parse(_ n: String) -> String {
            guard let w = DiffusersFolder.WeightFileName(n) else { return "nil" }
            return "\(w.stem)|\(w.variant ?? "-")|\(w.shard.map { "\($0.index)/\($0.count)" } ?? "-")"
        }
        XCTAssertEqual(parse("diffusion_pytorch_model.safetensors"), "diffusion_pytorch_model|-|-")
        XCTAssertEqual(parse("diffusion_pytorch_model.fp16.safetensors"), "diffusion_pytorch_model|fp16|-")
        XCTAssertEqual(parse("model-00001-of-00002.safetensors"), "model|-|1/2")
        XCTAssertEqual(parse("diffusion_pytorch_model.fp16-00002-of-00002.safetensors"), "diffusion_pytorch_model|fp16|2/2")
        XCTAssertEqual(parse("model-00003-of-00002.safetensors"), "model-00003-of-00002|-|-", "not a shard: index past count")
        XCTAssertEqual(parse("config.json"), "nil")
        XCTAssertEqual(parse(".safetensors"), "nil")
    }

    func touch(_ dir: String, _ names: [String]) throws {
        for n in names {
            try SafeTensorsWriter.write([("x", .F32, [1], [0, 0, 0, 0])], metadata: nil, to: dir + "/" + n)
        }
    }

    func names(_ paths: [String]) -> [String] { paths.map { String($0.split(separator: "/").last!) } }

    func testWeightFileSelection() throws {
        let tmp = TempDir()
        let d = tmp.path
        try touch(d, ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"])
        XCTAssertEqual(names(try DiffusersFolder.weightFiles(in: d, variant: nil)), ["diffusion_pytorch_model.safetensors"])
        XCTAssertEqual(names(try DiffusersFolder.weightFiles(in: d, variant: "fp16")), ["diffusion_pytorch_model.fp16.safetensors"])
        XCTAssertEqual(names(try DiffusersFolder.weightFiles(in: d, variant: "bf16")), ["diffusion_pytorch_model.safetensors"],
                       "a variant the folder lacks falls back to the plain files")
        let empty = TempDir()
        XCTAssertThrowsError(try DiffusersFolder.weightFiles(in: empty.path, variant: "bf16")) {
            XCTAssertTrue("\($0)".contains("*.bf16.safetensors"), "\($0)")
        }

        // Sharded variant files found by name, in shard order; the plain request falls back to the only variant.
        let s = TempDir()
        try touch(s.path, ["diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
                           "diffusion_pytorch_model.fp16-00001-of-00002.safetensors"])
        XCTAssertEqual(names(try DiffusersFolder.weightFiles(in: s.path, variant: "fp16")),
                       ["diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
                        "diffusion_pytorch_model.fp16-00002-of-00002.safetensors"])
        XCTAssertEqual(try DiffusersFolder.weightFiles(in: s.path, variant: nil).count, 2)

        // An incomplete set is named.
        let i = TempDir()
        try touch(i.path, ["model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors"])
        XCTAssertThrowsError(try DiffusersFolder.weightFiles(in: i.path, variant: nil)) {
            XCTAssertTrue("\($0)".contains("shard(s) 2 of 3 missing"), "\($0)")
        }

        // An index lists the shards; it may not point outside the folder or at a missing file.
        let x = TempDir()
        try touch(x.path, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        let index = x.path + "/model.safetensors.index.json"
        writeText(index, #"{"metadata": {}, "weight_map": {"a": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors"}}"#)
        XCTAssertEqual(names(try DiffusersFolder.weightFiles(in: x.path, variant: nil)),
                       ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        writeText(index, #"{"weight_map": {"a": "../secret.safetensors"}}"#)
        XCTAssertThrowsError(try DiffusersFolder.weightFiles(in: x.path, variant: nil)) {
            XCTAssertTrue("\($0)".contains("not a file name in the folder"), "\($0)")
        }
        writeText(index, #"{"weight_map": {"a": "model-00009-of-00009.safetensors"}}"#)
        XCTAssertThrowsError(try DiffusersFolder.weightFiles(in: x.path, variant: nil)) {
            XCTAssertTrue("\($0)".contains("not a regular file"), "\($0)")
        }
    }

    func testModelIndex() throws {
        let tmp = TempDir()
        writeText(tmp.file("model_index.json"), #"""
            {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "safety_checker": [null, null], "vae": ["diffusers", "AutoencoderKL"], "requires_safety_checker": false}
            """#)
        let folder = try DiffusersFolder(path: tmp.path)
        XCTAssertEqual(folder.pipelineClass, "StableDiffusionPipeline")
        XCTAssertEqual(folder.components.map(\.name), ["unet", "vae"], "file order, disabled entries left out")
        XCTAssertEqual(folder.component("vae")?.className, "AutoencoderKL")
        XCTAssertThrowsError(try DiffusersFolder(path: tmp.file("nope"))) { XCTAssertTrue("\($0)".contains("not found")) }
    }

    /// The tiny pipeline with its fp16 UNet split into two variant shards behind an index gives the image of the
    /// same weights in one fp16 file.
    func testPipelineLoadsShardedVariant() throws {
        let sd1 = PipelineTests.fixtures.appendingPathComponent("sd1-tiny").path
        let tmp = TempDir()
        let dir = tmp.path + "/sd"
        try FileManager.default.copyItem(atPath: sd1, toPath: dir)
        let unet = dir + "/unet"
        let single = unet + "/diffusion_pytorch_model.fp16.safetensors"
        let source = try SafeTensorsFile(path: single)
        let tensors: [SafeTensorsWriter.Tensor] = try source.tensors.map {
            (name: $0.name, dtype: $0.dtype, shape: $0.shape, data: try source.copyBytes($0.name))
        }
        let mid = tensors.count / 2
        let shardNames = ["diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
                          "diffusion_pytorch_model.fp16-00002-of-00002.safetensors"]
        try SafeTensorsWriter.write(Array(tensors[..<mid]), metadata: nil, to: unet + "/" + shardNames[0])
        try SafeTensorsWriter.write(Array(tensors[mid...]), metadata: nil, to: unet + "/" + shardNames[1])
        let map = tensors.enumerated().map { "\"\($0.element.name)\": \"\(shardNames[$0.offset < mid ? 0 : 1])\"" }
        writeText(unet + "/diffusion_pytorch_model.safetensors.index.fp16.json", "{\"weight_map\": {\(map.joined(separator: ", "))}}")
        try FileManager.default.removeItem(atPath: single)
        let request = PipelineTests.tinyRequest(steps: 3)
        let expected = try StableDiffusionPipeline(directory: sd1, variant: "fp16").generate(request)
        let sharded = try StableDiffusionPipeline(directory: dir, variant: "fp16")
        XCTAssertEqual(try sharded.generate(request), expected)
        XCTAssertEqual(sharded.offloadController.registry(.unet).weights.count, tensors.count)
    }
}
