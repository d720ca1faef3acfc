import XCTest
import LeanDiffusion
#if canImport(FoundationEssentials)
import FoundationEssentials
#endif

/// The embedded default model (Models/tiny-sd, trained by tools/train_default_model.py on the synthetic shapes of
/// tools/shapes_dataset.py) draws what it is asked: for held-out prompts ("two green triangles on a white background,
/// top left"), the shape's colour, the background and the position of the shape's mass are as asked in at least
/// `threshold` of the cases: diffusers' rate on the same model less a slack of two prompts, 0.90 for the committed model
/// (38/40), the issue's bar (Fixtures/default-model/eval.json, written by `tools/check_default_model.py
/// --write-fixture`, which uses the same analysis; the UNet file's size is checked, its sha256 recorded).
final class DefaultModelTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let fixture = root.appendingPathComponent("Fixtures/default-model/eval.json")
    static let model = root.appendingPathComponent("../../Models/tiny-sd").standardized

    struct Expectation: Decodable {
        let prompt: String
        let seed: UInt64
        let colour: String
        let background: String
        let position: String?
    }

    /// The analysis settings both fixtures (eval.json, img2img.json) carry; decoded from the same JSON object.
    struct AnalysisSettings: Decodable {
        let distance: Double
        let min_pixels: Int
        let palette: [String: [Double]]
        let regions: [String: [Double]]
    }

    struct Eval: Decodable {
        let unet_sha256: String
        let unet_bytes: Int
        let steps: Int
        let guidance: Float
        let width: Int
        let height: Int
        let diffusers_agreement: Double
        let threshold: Double
        let prompts: [Expectation]
    }

    struct Analysis: Equatable {
        var background: String
        var colour: String?
        var position: String?
        var pixels: Int
    }

    static func nearest(_ p: [Double], _ table: [String: [Double]]) -> String {
        table.min { a, b in
            let da = zip(p, a.value).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
            let db = zip(p, b.value).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
            return da != db ? da < db : a.key < b.key
        }!.key
    }

    static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// The analysis of tools/check_default_model.py: border median = background, far-from-background pixels = shape.
    static func analyse(_ image: RGBImage, _ e: AnalysisSettings) -> Analysis {
        let (w, h) = (image.width, image.height)
        func px(_ x: Int, _ y: Int) -> [Double] {
            let i = (y * w + x) * 3
            return [Double(image.pixels[i]), Double(image.pixels[i + 1]), Double(image.pixels[i + 2])]
        }
        var border: [[Double]] = []
        for y in 0..<h { for x in 0..<w where x < 2 || x >= w - 2 || y < 2 || y >= h - 2 { border.append(px(x, y)) } }
        let bg = (0..<3).map { c in median(border.map { $0[c] }) }
        var shape: [[Double]] = [], sx = 0.0, sy = 0.0
        for y in 0..<h {
            for x in 0..<w {
                let p = px(x, y)
                let d = zip(p, bg).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
                if d > e.distance { shape.append(p); sx += Double(x); sy += Double(y) }
            }
        }
        var a = Analysis(background: nearest(bg, e.palette), colour: nil, position: nil, pixels: shape.count)
        if shape.count >= e.min_pixels {
            a.colour = nearest((0..<3).map { c in median(shape.map { $0[c] }) }, e.palette)
            let n = Double(shape.count)
            a.position = nearest([(sx / n + 0.5) * 64 / Double(w), (sy / n + 0.5) * 64 / Double(h)], e.regions)
        }
        return a
    }

    func testHeldOutPromptsAreDrawnAsAsked() throws {
        guard let data = FileManager.default.contents(atPath: Self.fixture.path) else {
            throw XCTSkip("no \(Self.fixture.path): run tools/check_default_model.py --write-fixture on the trained model")
        }
        let eval = try JSONDecoder().decode(Eval.self, from: data)
        let settings = try JSONDecoder().decode(AnalysisSettings.self, from: data)
        let unetPath = Self.model.appendingPathComponent("unet/diffusion_pytorch_model.safetensors").path
        guard let unetBytes = FileManager.default.contents(atPath: unetPath) else {
            return XCTFail("missing \(unetPath)")
        }
        // The fixture must describe the committed model (its sha256 is recorded too, for people).
        XCTAssertEqual(unetBytes.count, eval.unet_bytes,
                       "Models/tiny-sd changed since the fixture: rerun tools/check_default_model.py --write-fixture")

        let pipeline = try StableDiffusionPipeline(directory: Self.model.path)
        // What the README's first command uses without options: the settings this test measures.
        XCTAssertEqual(pipeline.samplingDefaults.guidanceScale, eval.guidance, "Models/tiny-sd/lean_diffusion.json and eval.json disagree")
        XCTAssertEqual(pipeline.samplingDefaults.steps, eval.steps, "Models/tiny-sd/lean_diffusion.json and eval.json disagree")
        var agreed = 0
        var report: [String] = []
        for p in eval.prompts {
            var request = GenerationRequest(prompt: p.prompt)
            request.steps = eval.steps
            request.seed = p.seed
            request.guidanceScale = eval.guidance
            request.width = eval.width
            request.height = eval.height
            let image = try pipeline.generate(request)[0]
            XCTAssertEqual(image.width, eval.width)
            XCTAssertEqual(image.height, eval.height)
            let a = Self.analyse(image, settings)
            let ok = a.colour == p.colour && a.background == p.background && (p.position == nil || a.position == p.position)
            if ok { agreed += 1 }
            report.append("\(ok ? "ok  " : "FAIL") \(p.prompt): \(a.colour ?? "-") on \(a.background) at \(a.position ?? "-") (\(a.pixels) px)")
        }
        let rate = Double(agreed) / Double(eval.prompts.count)
        print(report.joined(separator: "\n"))
        print("default model agreement \(agreed)/\(eval.prompts.count) (diffusers \(eval.diffusers_agreement))")
        XCTAssertGreaterThanOrEqual(rate + 1e-9, eval.threshold, report.joined(separator: "\n"))
    }

    struct ImageToImageEval: Decodable {
        struct Case: Decodable {
            let name: String
            let prompt: String
            let strength: Double
            let colour: String
            let background: String
            let position: String?
            let diffusers_agreement: Double
            let threshold: Double
        }
        let unet_bytes: Int
        let picture: String
        let steps: Int
        let guidance: Float
        let seeds: [UInt64]
        let cases: [Case]
    }

    /// Image-to-image on the default model (Fixtures/default-model/img2img.json, tools/check_default_img2img.py):
    /// from a red circle on blue, "a blue circle on a red background" at strength 0.8 gives a blue shape on red,
    /// and at strength 0.1 the red circle on blue stays in the centre, for at least the fixture's share of the seeds
    /// (diffusers' rate less two seeds), by the text-to-image test's analysis.
    func testImageToImageRecolours() throws {
        let dir = Self.root.appendingPathComponent("Fixtures/default-model")
        let data = try Data(contentsOf: dir.appendingPathComponent("img2img.json"))
        let eval = try JSONDecoder().decode(ImageToImageEval.self, from: data)
        let unetPath = Self.model.appendingPathComponent("unet/diffusion_pytorch_model.safetensors").path
        let unetBytes = try FileManager.default.attributesOfItem(atPath: unetPath)[.size] as? Int
        XCTAssertEqual(unetBytes, eval.unet_bytes,
                       "Models/tiny-sd changed since the fixture: rerun tools/check_default_img2img.py --write-fixture")
        let picture = try RGBImage.load(path: dir.appendingPathComponent(eval.picture).path)
        let analysis = try JSONDecoder().decode(AnalysisSettings.self, from: data)
        let start = Self.analyse(picture, analysis)
        XCTAssertEqual([start.colour, start.background, start.position], ["red", "blue", "center"])
        let pipeline = try StableDiffusionPipeline(directory: Self.model.path)
        for c in eval.cases {
            var agreed = 0
            var report: [String] = []
            for seed in eval.seeds {
                var request = GenerationRequest(prompt: c.prompt)
                request.steps = eval.steps
                request.guidanceScale = eval.guidance
                request.seed = seed
                request.initImage = InitImage(image: picture, strength: c.strength)
                let a = Self.analyse(try pipeline.generate(request)[0], analysis)
                let ok = a.colour == c.colour && a.background == c.background && (c.position == nil || a.position == c.position)
                if ok { agreed += 1 }
                report.append("\(ok ? "ok  " : "FAIL") seed \(seed): \(a.colour ?? "-") on \(a.background) at \(a.position ?? "-")")
            }
            let rate = Double(agreed) / Double(eval.seeds.count)
            print("default model img2img \(c.name) (strength \(c.strength)): \(agreed)/\(eval.seeds.count) \(c.colour) on "
                  + "\(c.background) (diffusers \(c.diffusers_agreement))")
            XCTAssertGreaterThanOrEqual(rate + 1e-9, c.threshold, "\(c.name):\n" + report.joined(separator: "\n"))
        }
    }

    /// The analysis itself, on pictures whose answer is known.
    func testAnalysisOnSyntheticPictures() throws {
        let palette: [String: [Double]] = ["red": [220, 30, 30], "blue": [30, 60, 220], "white": [245, 245, 245]]
        let regions: [String: [Double]] = ["top left": [17, 17], "top right": [47, 17], "bottom left": [17, 47],
                                           "bottom right": [47, 47], "center": [32, 32]]
        let e = AnalysisSettings(distance: 80, min_pixels: 8, palette: palette, regions: regions)
        var pixels = [UInt8](repeating: 0, count: 64 * 64 * 3)
        for y in 0..<64 {
            for x in 0..<64 {
                let inside = (x - 47) * (x - 47) + (y - 17) * (y - 17) < 100
                let c: [UInt8] = inside ? [220, 30, 30] : [30, 60, 220]
                for k in 0..<3 { pixels[(y * 64 + x) * 3 + k] = c[k] }
            }
        }
        let a = Self.analyse(RGBImage(width: 64, height: 64, pixels: pixels), e)
        XCTAssertEqual(a.colour, "red")
        XCTAssertEqual(a.background, "blue")
        XCTAssertEqual(a.position, "top right")
        let blank = Self.analyse(RGBImage(width: 64, height: 64, pixels: [UInt8](repeating: 250, count: 64 * 64 * 3)), e)
        XCTAssertEqual(blank, Analysis(background: "white", colour: nil, position: nil, pixels: 0))
    }
}
