import XCTest
@testable import LeanDiffusion
import SafeTensors

final class InspectorTests: XCTestCase {
    var dir: TempDir!
    override func setUp() { dir = TempDir() }
    override func tearDown() { dir = nil }

    func makePipeline() throws -> String {
        let root = dir.file("sd")
        makeDir(root)
        writeText(root + "/model_index.json", """
            {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
             "text_encoder": ["transformers", "CLIPTextModel"], "unet": ["diffusers", "UNet2DConditionModel"],
             "scheduler": ["diffusers", "PNDMScheduler"], "safety_checker": [null, null], "requires_safety_checker": false}
            """)
        makeDir(root + "/text_encoder")
        writeText(root + "/text_encoder/config.json", #"{"architectures": ["CLIPTextModel"], "hidden_size": 8}"#)
        try SafeTensorsWriter.write([
            ("emb.weight", .F32, [4, 2], [UInt8](repeating: 0, count: 32)),
            ("pos", .F32, [3], [UInt8](repeating: 0, count: 12)),
        ], metadata: ["format": "pt"], to: root + "/text_encoder/model.safetensors")
        writeText(root + "/text_encoder/pytorch_model.bin", "x")
        makeDir(root + "/unet")
        writeText(root + "/unet/config.json", #"{"_class_name": "UNet2DConditionModel", "sample_size": 64}"#)
        try SafeTensorsWriter.write([("conv_in.weight", .F32, [2, 3], [UInt8](repeating: 0, count: 24))], metadata: nil,
                                    to: root + "/unet/diffusion_pytorch_model.safetensors")
        try SafeTensorsWriter.write([("conv_in.weight", .F16, [2, 3], [UInt8](repeating: 0, count: 12)),
                                     ("conv_in.bias", .BF16, [2], [UInt8](repeating: 0, count: 4))], metadata: nil,
                                    to: root + "/unet/diffusion_pytorch_model.fp16.safetensors")
        makeDir(root + "/scheduler")
        writeText(root + "/scheduler/scheduler_config.json", #"{"_class_name": "PNDMScheduler"}"#)
        return root
    }

    func testPipelineReport() throws {
        let root = try makePipeline()
        let r = try ModelInspector(path: root).report
        XCTAssertEqual(r.kind, "pipeline")
        XCTAssertEqual(r.pipelineClass, "StableDiffusionPipeline")
        XCTAssertEqual(r.components.map(\.name), ["text_encoder", "unet", "scheduler"])
        XCTAssertEqual(r.components.map(\.className), ["CLIPTextModel", "UNet2DConditionModel", "PNDMScheduler"])
        let te = r.components[0].weightFiles
        XCTAssertEqual(te.map(\.path), ["text_encoder/model.safetensors"])
        XCTAssertEqual(te[0].tensorCount, 2)
        XCTAssertEqual(te[0].parameterCount, 11)
        XCTAssertEqual(te[0].bytes, 44)
        XCTAssertEqual(te[0].dtypes, ["F32": 2])
        XCTAssertEqual(te[0].metadata, ["format": "pt"])
        let unet = r.components[1].weightFiles
        XCTAssertEqual(unet.map(\.path), ["unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.safetensors"])
        XCTAssertEqual(unet.map(\.variant), ["fp16", nil])
        XCTAssertEqual(unet[0].dtypes, ["F16": 1, "BF16": 1])
        XCTAssertEqual(unet[0].parameterCount, 8)
        XCTAssertTrue(r.components[2].weightFiles.isEmpty)
        XCTAssertTrue(r.warnings.contains { $0.contains("pytorch_model.bin") })
    }

    func testRenderings() throws {
        let insp = try ModelInspector(path: try makePipeline())
        let text = insp.render(listTensors: false)
        XCTAssertTrue(text.contains("StableDiffusionPipeline"))
        let teLine = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("text_encoder") })
        XCTAssertTrue(teLine.contains("CLIPTextModel") && teLine.contains("model.safetensors") && teLine.contains("F32:2") && teLine.contains("44 B"), String(teLine))
        XCTAssertTrue(text.contains("variant fp16"))
        XCTAssertFalse(text.contains("emb.weight"))
        // Columns are aligned: the "file" column starts at the same offset in every table row.
        let rows = text.split(separator: "\n").filter { $0.contains(".safetensors") && !$0.hasPrefix("warning") }
        let starts = Set(rows.map { $0.distance(from: $0.startIndex, to: $0.range(of: "/")!.lowerBound) - $0.split(separator: " ").filter { $0.contains("/") }[0].prefix(while: { $0 != "/" }).count })
        XCTAssertEqual(starts.count, 1, text)

        let listed = insp.render(listTensors: true)
        XCTAssertTrue(listed.contains("emb.weight"))
        XCTAssertTrue(listed.contains("[4, 2]"))
        XCTAssertTrue(listed.contains("BF16"))

        let json = try StrictJSON.parse(try insp.renderJSON(listTensors: false))
        XCTAssertEqual(json["pipelineClass"]?.stringValue, "StableDiffusionPipeline")
        let comps = try XCTUnwrap(json["components"]?.arrayValue)
        XCTAssertEqual(comps.count, 3)
        XCTAssertNil(comps[0]["weightFiles"]?.arrayValue?.first?["tensors"])
        let full = try StrictJSON.parse(try insp.renderJSON(listTensors: true))
        let tensors = try XCTUnwrap(full["components"]?.arrayValue?.first?["weightFiles"]?.arrayValue?.first?["tensors"]?.arrayValue)
        XCTAssertEqual(tensors.count, 2)
        XCTAssertEqual(tensors[0]["shape"], .array([.number("4"), .number("2")]))
    }

    func testSingleFileAndComponentFolder() throws {
        let root = try makePipeline()
        let file = try ModelInspector(path: root + "/unet/diffusion_pytorch_model.safetensors").report
        XCTAssertEqual(file.kind, "file")
        XCTAssertEqual(file.components.first?.weightFiles.first?.tensorCount, 1)
        let comp = try ModelInspector(path: root + "/unet/").report
        XCTAssertEqual(comp.kind, "component")
        XCTAssertEqual(comp.components.first?.name, "unet")
        XCTAssertEqual(comp.components.first?.className, "UNet2DConditionModel")
        XCTAssertEqual(comp.components.first?.weightFiles.count, 2)
    }

    func testVariantNames() {
        XCTAssertNil(ModelInspector.variant(of: "model.safetensors"))
        XCTAssertEqual(ModelInspector.variant(of: "model.fp16.safetensors"), "fp16")
        XCTAssertNil(ModelInspector.variant(of: "model-00001-of-00002.safetensors"))
        XCTAssertEqual(ModelInspector.variant(of: "diffusion_pytorch_model.fp16-00001-of-00002.safetensors"), "fp16")
    }

    func testErrors() throws {
        XCTAssertThrowsError(try ModelInspector(path: dir.file("missing"))) {
            XCTAssertEqual(($0 as? SafeTensorsError)?.kind, .pathNotFound)
            XCTAssertTrue("\($0)".contains("missing"))
        }
        let empty = dir.file("empty")
        makeDir(empty)
        writeText(empty + "/config.json", "{}")
        XCTAssertThrowsError(try ModelInspector(path: empty)) { XCTAssertEqual(($0 as? SafeTensorsError)?.kind, .noWeights) }
        let pipe = dir.file("pipe")
        makeDir(pipe)
        writeText(pipe + "/model_index.json", #"{"_class_name":"X","unet":["diffusers","UNet2DConditionModel"]}"#)
        XCTAssertThrowsError(try ModelInspector(path: pipe)) { XCTAssertEqual(($0 as? SafeTensorsError)?.kind, .noWeights) }
        writeText(pipe + "/model_index.json", "{")
        XCTAssertThrowsError(try ModelInspector(path: pipe)) {
            guard case .invalidConfig(let file, _, _)? = $0 as? PipelineError, file.hasSuffix("model_index.json") else {
                return XCTFail("\($0)")
            }
        }
        // A corrupt weight file is reported with its own path.
        let bad = dir.file("bad")
        makeDir(bad)
        writeFile(bad + "/model.safetensors", [1, 2, 3])
        XCTAssertThrowsError(try ModelInspector(path: bad)) { XCTAssertEqual(($0 as? SafeTensorsError)?.path, bad + "/model.safetensors") }
    }
}
