import Foundation
import Hummingbird
import LeanDiffusion
import LeanDiffusionServer
import XCTest

/// The HTTP API on the embedded model: the images are the library's (which the pipeline tests hold to diffusers'),
/// fields left out take the CLI's defaults, and every bad input is a 4xx naming the field.
final class ServerAPITests: XCTestCase {
    /// txt2img gives the pixels `StableDiffusionPipeline.generate` gives for the same request, with the CLI's
    /// `parameters` chunk in each PNG and the seeds in `info`.
    func testTxt2ImgIsTheLibrarysImage() async throws {
        let pipeline = try StableDiffusionPipeline(directory: ServerFixture.model)
        var request = GenerationRequest(prompt: "a red circle on a blue background", negativePrompt: "green")
        request.steps = 6
        request.guidanceScale = 2.5
        request.seed = 42
        request.scheduler = .eulerAncestral
        request.imagesPerPrompt = 2
        let expected = try pipeline.generate(request)
        let infotexts = pipeline.generationParameters(for: request, seed: 42, modelHash: "0123456789", model: "tiny-sd")
            .map(\.infotext)

        try await ServerFixture.withServer { client, _ in
            let r = try await client.post("/sdapi/v1/txt2img", [
                "prompt": "a red circle on a blue background", "negative_prompt": "green", "steps": 6,
                "cfg_scale": 2.5, "seed": 42, "sampler_name": "Euler a", "batch_size": 2,
                "restore_faces": false, "styles": [] as [String],  // A1111 fields we ignore
            ])
            XCTAssertEqual(r.status, .ok, text(r))
            let body = try XCTUnwrap(object(r))
            let images = try pngs(body)
            XCTAssertEqual(images.count, 2)
            for (i, png) in images.enumerated() {
                let (image, parameters) = try decodePNG(png)
                XCTAssertEqual(image, expected[i], "image \(i) differs from the library's")
                XCTAssertEqual(parameters, infotexts[i])
            }
            let info = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((body["info"] as! String).utf8)) as? [String: Any])
            XCTAssertEqual(info["all_seeds"] as? [Int], [42, 42])
            XCTAssertEqual(info["infotexts"] as? [String], infotexts)
            XCTAssertEqual(info["sd_model_hash"] as? String, "0123456789")
            let parameters = try XCTUnwrap(body["parameters"] as? [String: Any])
            XCTAssertEqual(parameters["sampler_name"] as? String, "Euler a")
            XCTAssertEqual(parameters["width"] as? Int, 64)
        }
    }

    /// Left out: the model's size and scheduler, the folder's lean_diffusion.json (20 steps, guidance 2.5), a
    /// random seed that `info` names; n_iter runs seed + i.
    func testDefaultsAndIterations() async throws {
        try await ServerFixture.withServer { client, _ in
            let r = try await client.post("/sdapi/v1/txt2img", ["prompt": "a yellow star", "n_iter": 2, "steps": 3])
            XCTAssertEqual(r.status, .ok, text(r))
            let body = try XCTUnwrap(object(r))
            let p = try XCTUnwrap(body["parameters"] as? [String: Any])
            XCTAssertEqual(p["cfg_scale"] as? Double, 2.5)
            XCTAssertEqual(p["sampler_name"] as? String, "PLMS")
            XCTAssertEqual(p["width"] as? Int, 64)
            XCTAssertEqual(p["height"] as? Int, 64)
            let seed = try XCTUnwrap(p["seed"] as? Int)
            let info = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((body["info"] as! String).utf8)) as? [String: Any])
            XCTAssertEqual(info["all_seeds"] as? [Int], [seed, seed + 1])
            XCTAssertEqual(try pngs(body).count, 2)

            let r1 = try await client.post("/sdapi/v1/txt2img", ["prompt": "a yellow star", "steps": 1])
            let d = try XCTUnwrap(object(r1))
            XCTAssertEqual((d["parameters"] as? [String: Any])?["steps"] as? Int, 1)
            let r2 = try await client.post("/v1/jobs", ["prompt": "x"])
            let job = try XCTUnwrap(object(r2)?["id"] as? String)
            let r3 = try await client.waitForJob(job)["state"] as? String
            XCTAssertEqual(r3, "done")
            let r4 = try await client.get("/v1/jobs/\(job)/result")
            let result = try XCTUnwrap(object(r4))
            XCTAssertEqual((result["parameters"] as? [String: Any])?["steps"] as? Int, 20, "the folder's lean_diffusion.json steps")
        }
    }

    /// Each bad input is a 4xx whose error names the field; nothing crashes and the server goes on serving.
    func testBadInputIsNamed() async throws {
        try await ServerFixture.withServer({ $0.maxBodyBytes = 4096; $0.maxImagesPerRequest = 4 }) { client, _ in
            let cases: [([String: Any], String)] = [
                (["prompt": "x", "steps": 0], "steps"),
                (["prompt": "x", "steps": 5000], "steps"),
                (["prompt": "x", "steps": "ten"], "steps"),
                (["prompt": "x", "width": 65], "width"),
                (["prompt": "x", "height": -8], "height"),
                (["prompt": "x", "sampler_name": "Heun++"], "sampler_name"),
                (["prompt": "x", "scheduler": "Karras"], "scheduler"),
                (["prompt": "x", "batch_size": 0], "batch_size"),
                (["prompt": "x", "batch_size": 3, "n_iter": 2], "batch_size"),
                (["prompt": "x", "seed": -5], "seed"),
                (["prompt": "x", "seed": 1.5], "seed"),
                (["prompt": 7], "prompt"),
                (["prompt": "x", "override_settings": ["CLIP_stop_at_last_layers": 40]],
                 "override_settings.CLIP_stop_at_last_layers"),
                (["prompt": "x", "init_images": ["AAAA"]], "init_images"),
            ]
            for (body, field) in cases {
                let r = try await client.post("/sdapi/v1/txt2img", body)
                XCTAssertEqual(r.status, .badRequest, "\(body): \(text(r))")
                let error = try XCTUnwrap(object(r)?["error"] as? [String: Any], text(r))
                XCTAssertEqual(error["param"] as? String, field, "\(body): \(text(r))")
                XCTAssert((error["message"] as? String ?? "").contains(field), "\(body): \(text(r))")
            }
            let sampler = try await client.post("/sdapi/v1/txt2img", ["prompt": "x", "sampler_name": "Heun++"])
            XCTAssert(text(sampler).contains("DPM++ 2M"), "the error lists the samplers: \(text(sampler))")

            for raw in ["", "{", "[1,2]", "null"] {
                let r = try await client.execute(uri: "/sdapi/v1/txt2img", method: .post, body: ByteBuffer(string: raw))
                XCTAssertEqual(r.status, .badRequest, "body \(raw): \(text(r))")
            }
            let big = try await client.post("/sdapi/v1/txt2img", ["prompt": String(repeating: "a", count: 5000)])
            XCTAssertEqual(big.status, .contentTooLarge, text(big))

            // img2img: a picture is needed, and it must be one.
            let noPicture = try await client.post("/sdapi/v1/img2img", ["prompt": "x"])
            XCTAssertEqual(object(noPicture).flatMap { $0["error"] as? [String: Any] }?["param"] as? String, "init_images")
            let notPicture = try await client.post("/sdapi/v1/img2img", ["prompt": "x", "init_images": ["aGVsbG8="]])
            XCTAssertEqual(notPicture.status, .badRequest)
            XCTAssertEqual(object(notPicture).flatMap { $0["error"] as? [String: Any] }?["param"] as? String, "init_images[0]")

            let r5 = try await client.get("/v1/jobs/nope").status
            XCTAssertEqual(r5, .notFound)
            let r6 = try await client.get("/v1/jobs/nope/result").status
            XCTAssertEqual(r6, .notFound)
            let r7 = try await client.execute(uri: "/v1/jobs/nope", method: .delete).status
            XCTAssertEqual(r7, .notFound)
            let r8 = try await client.get("/health").status
            XCTAssertEqual(r8, .ok, "still serving")
        }
    }

    /// img2img through A1111's endpoint is the library's image-to-image result.
    func testImg2Img() async throws {
        let pipeline = try StableDiffusionPipeline(directory: ServerFixture.model)
        let picturePath = ServerFixture.root.appendingPathComponent("../LeanDiffusionTests/Fixtures/default-model/red-circle-on-blue.png").standardized.path
        let picture = try RGBImage.load(path: picturePath)
        var request = GenerationRequest(prompt: "a blue circle on a red background")
        request.steps = 10
        request.guidanceScale = 2.5
        request.seed = 7
        request.initImage = InitImage(image: picture, strength: 0.6)
        let expected = try pipeline.generate(request)
        let b64 = try Data(contentsOf: URL(fileURLWithPath: picturePath)).base64EncodedString()
        try await ServerFixture.withServer { client, _ in
            let r = try await client.post("/sdapi/v1/img2img", [
                "prompt": "a blue circle on a red background", "steps": 10, "seed": 7, "denoising_strength": 0.6,
                "init_images": ["data:image/png;base64," + b64],
            ])
            XCTAssertEqual(r.status, .ok, text(r))
            let body = try XCTUnwrap(object(r))
            let (image, parameters) = try decodePNG(try XCTUnwrap(pngs(body).first))
            XCTAssertEqual(image, expected[0])
            XCTAssert(parameters?.contains("Denoising strength: 0.6") == true, parameters ?? "no parameters")
            let bad = try await client.post("/sdapi/v1/img2img", ["prompt": "x", "init_images": [b64], "denoising_strength": 0])
            XCTAssertEqual(object(bad).flatMap { $0["error"] as? [String: Any] }?["param"] as? String, "denoising_strength")
        }
    }

    /// OpenAI's images API: n images of "WxH", b64_json only.
    func testOpenAIImages() async throws {
        try await ServerFixture.withServer { client, _ in
            let r = try await client.post("/v1/images/generations", ["prompt": "a green triangle", "n": 2, "size": "64x48",
                                                                     "model": "dall-e-3", "steps": 3])
            XCTAssertEqual(r.status, .ok, text(r))
            let data = try XCTUnwrap(object(r)?["data"] as? [[String: Any]])
            XCTAssertEqual(data.count, 2)
            let (image, _) = try decodePNG([UInt8](try XCTUnwrap(Data(base64Encoded: data[0]["b64_json"] as! String))))
            XCTAssertEqual(image.width, 64)
            XCTAssertEqual(image.height, 48)
            for (body, field) in [(["prompt": "x", "size": "big"], "size"), (["prompt": "x", "n": 0], "n"),
                                  (["prompt": "x", "response_format": "url"], "response_format"),
                                  (["prompt": "x", "size": "65x64"], "size"), (["n": 1], "prompt")] as [([String: Any], String)] {
                let bad = try await client.post("/v1/images/generations", body)
                XCTAssertEqual(bad.status, .badRequest, "\(body)")
                XCTAssertEqual(object(bad).flatMap { $0["error"] as? [String: Any] }?["param"] as? String, field, "\(body): \(text(bad))")
            }
        }
    }

    /// GET lists: samplers, schedulers, models, options, health, metrics.
    func testListsHealthAndMetrics() async throws {
        try await ServerFixture.withServer { client, _ in
            let r9 = try await client.get("/sdapi/v1/samplers").body.readableBytesView
            let samplers = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r9)) as? [[String: Any]])
            XCTAssertEqual(samplers.compactMap { $0["name"] as? String }, SchedulerKind.allCases.map(\.a1111SamplerName))
            let r10 = try await client.get("/sdapi/v1/sd-models").body.readableBytesView
            let models = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r10)) as? [[String: Any]])
            XCTAssertEqual(models.first?["model_name"] as? String, "tiny-sd")
            let r11 = try await client.get("/sdapi/v1/options")
            XCTAssertEqual(object(r11)?["sd_model_checkpoint"] as? String, "tiny-sd")
            let r12 = try await client.get("/health")
            XCTAssertEqual(object(r12)?["status"] as? String, "ok")
            _ = try await client.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 2, "sampler_name": "DDIM"])
            let metrics = text(try await client.get("/metrics"))
            for line in ["lean_diffusion_queue_depth 0", "lean_diffusion_jobs_total{state=\"done\"} 1",
                         "lean_diffusion_step_seconds_count 2", "# TYPE lean_diffusion_peak_rss_bytes gauge"] {
                XCTAssert(metrics.contains(line), "no '\(line)' in\n\(metrics)")
            }
            let page = try await client.get("/")
            XCTAssertEqual(page.headers[.contentType], "text/html; charset=utf-8")
            XCTAssert(text(page).contains("<button id=\"generate\""))
        }
    }

    /// With --api-key the API needs the bearer token; the page and /health do not.
    func testAPIKey() async throws {
        try await ServerFixture.withServer({ $0.apiKey = "s3cret" }) { client, _ in
            let denied = try await client.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 1])
            XCTAssertEqual(denied.status, .unauthorized)
            XCTAssertEqual(denied.headers[.wwwAuthenticate], "Bearer")
            let r13 = try await client.get("/v1/jobs", headers: [.authorization: "Bearer wrong"]).status
            XCTAssertEqual(r13, .unauthorized)
            let r14 = try await client.get("/metrics").status
            XCTAssertEqual(r14, .unauthorized)
            let ok = try await client.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 1], headers: [.authorization: "Bearer s3cret"])
            XCTAssertEqual(ok.status, .ok)
            let r15 = try await client.get("/").status
            XCTAssertEqual(r15, .ok)
            let r16 = try await client.get("/health").status
            XCTAssertEqual(r16, .ok)
        }
    }
}
