import Hummingbird
import LeanDiffusion
import NIOCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Every HTTP route of `lean-diffusion serve` (documented in docs/openapi.yaml).
struct ServerRoutes: Sendable {
    let queue: JobQueue
    let service: ModelService
    let configuration: ServerConfiguration
    let counts: HTTPCounts
    let workers: Int

    func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: CountingMiddleware(counts: counts))
        if let key = configuration.apiKey { router.add(middleware: BearerTokenMiddleware(key: Array(key.utf8))) }

        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: WebPage.html)))
        }
        router.get("/health") { _, _ in try health() }
        router.get("/metrics") { _, _ in
            let text = Metrics.text(queue.counts, http: counts.snapshot, model: service.model, workers: workers)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }

        // AUTOMATIC1111
        router.get("/sdapi/v1/samplers") { _, _ in
            try JSONResponse.make(SchedulerKind.allCases.map {
                Sampler(name: $0.a1111SamplerName, aliases: [$0.rawValue, $0.diffusersClassName], options: [:])
            })
        }
        router.get("/sdapi/v1/schedulers") { _, _ in
            try JSONResponse.make(a1111ScheduleTypes.map { ScheduleType(name: $0.name.lowercased().replacing(" ", with: "_"),
                                                                        label: $0.name) })
        }
        router.get("/sdapi/v1/sd-models") { _, _ in
            try JSONResponse.make([SDModel(title: service.model.hash.map { "\(service.model.name) [\($0)]" } ?? service.model.name,
                                           modelName: service.model.name, hash: service.model.hash,
                                           filename: service.model.path)])
        }
        router.get("/sdapi/v1/options") { _, _ in
            try JSONResponse.make(Options(sdModelCheckpoint: service.model.name, clipStopAtLastLayers: 1,
                                          samplesFormat: "png"))
        }
        router.post("/sdapi/v1/txt2img") { request, _ in try await a1111(request, imageToImage: false) }
        router.post("/sdapi/v1/img2img") { request, _ in try await a1111(request, imageToImage: true) }

        // OpenAI
        router.post("/v1/images/generations") { request, _ in
            let body = try await JSONResponse.decode(OpenAIImageRequest.self, from: request, limit: configuration.maxBodyBytes)
            let spec = try service.spec(body, maxImages: configuration.maxImagesPerRequest)
            let result = try await runToEnd(spec)
            return try JSONResponse.make(OpenAIImageResponse(
                created: Int(Date().timeIntervalSince1970),
                data: result.pngs.map { .init(b64Json: Data($0).base64EncodedString(), revisedPrompt: body.prompt) }))
        }

        // Jobs
        router.post("/v1/jobs") { request, _ in
            let body = try await JSONResponse.decode(A1111Request.self, from: request, limit: configuration.maxBodyBytes)
            let spec = try service.spec(body, imageToImage: body.initImages != nil,
                                        maxImages: configuration.maxImagesPerRequest)
            let id = try submit(spec)
            var response = try JSONResponse.make(queue.snapshot(id), status: .accepted)
            response.headers[.location] = "/v1/jobs/\(id)"
            return response
        }
        router.get("/v1/jobs") { _, _ in try JSONResponse.make(JobList(jobs: queue.list())) }
        router.get("/v1/jobs/:id") { _, context in try JSONResponse.make(try snapshot(context)) }
        router.delete("/v1/jobs/:id") { _, context in
            let id = try context.parameters.require("id")
            guard let snap = queue.cancel(id, reason: "cancelled by a client") else { throw unknownJob(id) }
            return try JSONResponse.make(snap)
        }
        router.get("/v1/jobs/:id/events") { _, context in
            let id = try context.parameters.require("id")
            guard let events = queue.events(id) else { throw unknownJob(id) }
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                            body: ResponseBody { writer in
                                let encoder = JSONEncoder()
                                encoder.outputFormatting = [.sortedKeys]
                                for await snap in events {
                                    let name = snap.state.isFinal ? snap.state.rawValue : "progress"
                                    let json = String(decoding: try encoder.encode(snap), as: UTF8.self)
                                    try await writer.write(ByteBuffer(string: "event: \(name)\ndata: \(json)\n\n"))
                                }
                                try await writer.finish(nil)
                            })
        }
        router.get("/v1/jobs/:id/result") { _, context in
            let id = try context.parameters.require("id")
            let (result, spec) = try finished(id)
            return try JSONResponse.make(A1111Response(result: result, parameters: spec.parameters, model: service.model))
        }
        router.get("/v1/jobs/:id/images/:index") { _, context in
            let id = try context.parameters.require("id")
            let index = try context.parameters.require("index", as: Int.self)
            let (result, _) = try finished(id)
            guard result.pngs.indices.contains(index) else {
                throw APIError.notFound("job \(id) has \(result.pngs.count) images; there is no image \(index)")
            }
            return Response(status: .ok, headers: [.contentType: "image/png", .cacheControl: "max-age=3600"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: result.pngs[index])))
        }
        return router
    }

    // MARK: Handlers

    func health() throws -> Response {
        let c = queue.counts
        let draining = queue.isDraining
        return try JSONResponse.make(Health(status: draining ? "draining" : "ok", model: service.model.name,
                                            queueDepth: c.waiting, running: c.running),
                                     status: draining ? .serviceUnavailable : .ok)
    }

    func a1111(_ request: Request, imageToImage: Bool) async throws -> Response {
        let body = try await JSONResponse.decode(A1111Request.self, from: request, limit: configuration.maxBodyBytes)
        let spec = try service.spec(body, imageToImage: imageToImage, maxImages: configuration.maxImagesPerRequest)
        let result = try await runToEnd(spec)
        return try JSONResponse.make(A1111Response(result: result, parameters: spec.parameters, model: service.model))
    }

    func submit(_ spec: JobSpec) throws -> String {
        do {
            return try queue.submit(spec)
        } catch .full(let seconds) {
            throw APIError(status: .tooManyRequests,
                           message: "the queue is full (\(queue.queueSize) jobs waiting, --queue-size); retry in about \(seconds) s",
                           headers: [.retryAfter: "\(seconds)"])
        } catch .draining {
            throw APIError(status: .serviceUnavailable, message: "the server is shutting down and takes no new work")
        }
    }

    /// Queues the job and waits for it: its result, or its failure as the matching status.
    func runToEnd(_ spec: JobSpec) async throws -> JobResult {
        let id = try submit(spec)
        _ = await queue.wait(id)
        guard let (snap, result, status) = queue.result(id) else {
            throw APIError(status: .internalServerError, message: "job \(id) was dropped before its result was read")
        }
        switch snap.state {
        case .done:
            if let result { return result }
            throw APIError(status: .internalServerError, message: "job \(id) finished without images")
        case .cancelled:
            throw APIError(status: .conflict, message: "job \(id) was cancelled" + (snap.error.map { ": \($0)" } ?? ""))
        default:
            throw APIError(status: HTTPResponse.Status(code: status ?? 500),
                           message: snap.error ?? "job \(id) failed")
        }
    }

    func snapshot(_ context: BasicRequestContext) throws -> JobSnapshot {
        let id = try context.parameters.require("id")
        guard let snap = queue.snapshot(id) else { throw unknownJob(id) }
        return snap
    }

    func finished(_ id: String) throws -> (JobResult, JobSpec) {
        guard let (snap, result, _) = queue.result(id), let spec = queue.spec(id) else { throw unknownJob(id) }
        guard snap.state == .done, let result else {
            throw APIError(status: .conflict, message: "job \(id) is \(snap.state.rawValue)"
                           + (snap.error.map { ": \($0)" } ?? "") + "; results exist once it is done")
        }
        return (result, spec)
    }

    func unknownJob(_ id: String) -> APIError {
        .notFound("no job \(id) (unknown, or forgotten: the server keeps the last \(configuration.keptJobs) finished jobs)")
    }
}

// MARK: Response bodies

struct Health: Encodable {
    let status: String
    let model: String
    let queueDepth: Int
    let running: Int
    enum CodingKeys: String, CodingKey { case status, model, running, queueDepth = "queue_depth" }
}

struct Sampler: Encodable {
    let name: String
    let aliases: [String]
    let options: [String: String]
}

struct ScheduleType: Encodable {
    let name: String
    let label: String
}

struct SDModel: Encodable {
    let title: String
    let modelName: String
    let hash: String?
    let filename: String
    enum CodingKeys: String, CodingKey { case title, hash, filename, modelName = "model_name" }
}

struct Options: Encodable {
    let sdModelCheckpoint: String
    let clipStopAtLastLayers: Int
    let samplesFormat: String
    enum CodingKeys: String, CodingKey {
        case sdModelCheckpoint = "sd_model_checkpoint", clipStopAtLastLayers = "CLIP_stop_at_last_layers"
        case samplesFormat = "samples_format"
    }
}

struct JobList: Encodable {
    let jobs: [JobSnapshot]
}
