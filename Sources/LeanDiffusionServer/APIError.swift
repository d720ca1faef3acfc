import Hummingbird
import LeanDiffusion
import NIOCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An error answered to the client: a status and a JSON body `{"error": {"message", "type", "param"}, "detail"}`
/// (OpenAI's error object; `detail` as A1111's FastAPI errors carry it), never a crash.
struct APIError: Error, HTTPResponseError, CustomStringConvertible {
    var status: HTTPResponse.Status
    var message: String
    /// The request field at fault, when one is.
    var field: String? = nil
    var headers: HTTPFields = [:]

    var description: String { message }

    static func badRequest(_ message: String, field: String? = nil) -> APIError {
        APIError(status: .badRequest, message: message, field: field)
    }

    static func notFound(_ message: String) -> APIError { APIError(status: .notFound, message: message) }

    var type: String {
        switch status.code {
        case 400, 413, 422: return "invalid_request_error"
        case 401: return "authentication_error"
        case 404: return "not_found_error"
        case 409: return "conflict_error"
        case 429: return "rate_limit_error"
        case 503: return "unavailable_error"
        case 504: return "timeout_error"
        default: return "server_error"
        }
    }

    struct Body: Encodable {
        struct Inner: Encodable {
            let message: String
            let type: String
            let param: String?
        }
        let error: Inner
        let detail: String
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = Body(error: .init(message: message, type: type, param: field), detail: message)
        var response = try JSONResponse.make(body, status: status)
        for field in headers { response.headers.append(field) }
        return response
    }

    static func typeName(_ type: Any.Type) -> String {
        let name = "\(type)"
        if name.hasPrefix("Int") || name.hasPrefix("UInt") { return "an integer" }
        if name == "Double" || name == "Float" { return "a number" }
        if name == "String" { return "a string" }
        if name == "Bool" { return "true or false" }
        if name.hasPrefix("Array") { return "an array" }
        return "a JSON \(name)"
    }
}

extension APIError {
    /// A library error as the client's error: request problems are 400s naming the API's field.
    init(_ error: PipelineError, fields: [String: String]) {
        switch error {
        case .invalidRequest(let field, let reason):
            let name = fields[field] ?? field
            self = .badRequest("\(name): \(reason)", field: name)
        case .insufficientMemory:
            self = .badRequest(error.description)
        case .unsupportedDType:
            self = .badRequest(error.description)
        default:
            self = APIError(status: .internalServerError, message: error.description)
        }
    }

    /// JSON that did not decode, as a 400 naming the field (`init_images[0]`, `steps`).
    init(decoding error: DecodingError) {
        func path(_ keys: [any CodingKey]) -> String {
            var s = ""
            for k in keys {
                if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : ".\(k.stringValue)" }
            }
            return s
        }
        let context: DecodingError.Context? = {
            switch error {
            case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): return c
            case .keyNotFound: return nil
            @unknown default: return nil
            }
        }()
        if let context, context.codingPath.isEmpty {
            if case .dataCorrupted = error {
                self = .badRequest("the body is not valid JSON (\(context.debugDescription))")
            } else {
                self = .badRequest("the body must be a JSON object")
            }
            return
        }
        switch error {
        case .typeMismatch(let type, let c):
            let p = path(c.codingPath)
            self = .badRequest("\(p.isEmpty ? "body" : p): expected \(Self.typeName(type))", field: p.isEmpty ? nil : p)
        case .valueNotFound(let type, let c):
            let p = path(c.codingPath)
            self = .badRequest("\(p): expected \(Self.typeName(type)), got null", field: p)
        case .keyNotFound(let key, let c):
            let p = path(c.codingPath + [key])
            self = .badRequest("\(p) is required", field: p)
        case .dataCorrupted(let c):
            let p = path(c.codingPath)
            if p.isEmpty {
                self = .badRequest("the body is not valid JSON (\(c.debugDescription))")
            } else {
                self = .badRequest("\(p): \(c.debugDescription)", field: p)
            }
        @unknown default:
            self = .badRequest("the body could not be read: \(error)")
        }
    }
}

enum JSONResponse {
    static func make(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        return Response(status: status, headers: [.contentType: "application/json; charset=utf-8"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Decodes a JSON body read within `limit` bytes; every failure is a 400 or 413 `APIError`.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, limit: Int) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError(status: .contentTooLarge, message: "the body is larger than \(limit) bytes (--max-body-bytes)")
        }
        guard buffer.readableBytes > 0 else { throw APIError.badRequest("the body is empty: a JSON object is expected") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch let e as DecodingError {
            throw APIError(decoding: e)
        } catch let e as APIError {
            throw e
        }
    }
}
