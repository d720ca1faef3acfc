import XCTest
import LeanDiffusion

/// `generate --init-image/--mask/--strength` end to end: the CLI's image is diffusers' (the img2img fixtures), its
/// metadata and report say what ran, and every bad picture, mask or strength is a message and a status, read
/// before the model loads.
extension CLIErrorTests {
    func testImageToImageFromTheCLI() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lean-cli-img-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let fixtures = ImageToImageTests.fixtures
        let out = dir + "/out.png"
        let common = ["generate", "--model", model, "--prompt", "a blue circle on a red background",
                      "--negative-prompt", "blurry", "--steps", "8", "--guidance", "7.5", "--seed", "42",
                      "--scheduler", "ddim", "--quiet", "--dtype", "fp32"]
        // Image-to-image at 0.75 and 4-channel inpainting at 1.0 (the --strength default with --mask).
        for (extra, reference) in [(["--init-image", fixtures.appendingPathComponent("init.png").path,
                                     "--strength", "0.75"], "img2img-ddim-0.75.png"),
                                    (["--init-image", fixtures.appendingPathComponent("init.png").path,
                                      "--mask", fixtures.appendingPathComponent("mask.png").path,
                                      "--scheduler", "pndm"], "inpaint-4ch-pndm-1.0.png")] {
            let r = try run(common + extra + ["--output", out, "--report", dir + "/r.json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let image = try RGBImage.readPNG(from: out)
            let expected = try RGBImage.readPNG(from: fixtures.appendingPathComponent("reference/" + reference).path)
            let (p, d) = PipelineTests.psnr(image, expected)
            XCTAssertGreaterThanOrEqual(p, 55, reference)
            XCTAssertLessThanOrEqual(d, 2, reference)
            let report = try String(contentsOfFile: dir + "/r.json", encoding: .utf8)
            XCTAssertTrue(report.contains("\"encode\""), "the report has an encode phase: \(report.prefix(300))")
        }
        let text = try XCTUnwrap(PNGText.text("parameters", from: out))
        XCTAssertTrue(text.contains("Denoising strength: 1.0"), text)
        XCTAssertTrue(text.contains("Size: 64x64"), text)

        // Bad inputs: each names what is wrong, and no image is written.
        try FileManager.default.removeItem(atPath: out)
        let images = ImageInputTests.dir
        let base = common + ["--output", out]
        func initImage(_ name: String) -> [String] { ["--init-image", images.appendingPathComponent(name).path] }
        try expectFailure(base + ["--init-image", dir + "/missing.png"], mentions: "missing.png", "not found")
        try expectFailure(base + initImage("text.png"), mentions: "text.png", "not an image")
        try expectFailure(base + initImage("truncated.jpg"), mentions: "truncated.jpg", "JPEG")
        try expectFailure(base + ["--init-image", fixtures.appendingPathComponent("init.png").path, "--mask",
                                  images.appendingPathComponent("mask-45x35.png").path],
                          mentions: "--mask", "45x35", "64x64")
        for s in ["0", "1.5", "nan"] {
            try expectFailure(base + ["--init-image", fixtures.appendingPathComponent("init.png").path, "--strength", s],
                              mentions: "--strength", "(0, 1]")
        }
        try expectFailure(base + ["--init-image", fixtures.appendingPathComponent("init.png").path,
                                  "--strength", "0.1"], mentions: "--strength", "no denoising step")
        try expectFailure(base + ["--mask", fixtures.appendingPathComponent("mask.png").path], mentions: "--init-image")
        try expectFailure(base + ["--strength", "0.5"], mentions: "--init-image")
        try expectFailure(["generate", "--model", ImageToImageTests.pipelineDirectory("sd1-tiny-inpaint"),
                           "--prompt", "x", "--output", out], mentions: "--init-image", "inpainting model")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
