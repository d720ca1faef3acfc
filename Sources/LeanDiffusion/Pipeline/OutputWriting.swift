/// Writing a run's results in the order that loses nothing: every image first (each atomically), then the
/// report, so a report that cannot be written never costs an image.
public enum GenerationOutput {
    /// Writes `images[i]` to `paths[i]` (with the text chunks `text[i]` when given: image metadata), calling `wrote`
    /// after each, then `report` (when given) to its path. A report failure throws `PipelineError.outputFailed` for
    /// the report's path saying the images were written.
    public static func write(_ images: [RGBImage], to paths: [String], text: [[PNGTextChunk]]? = nil,
                             report: (path: String, bytes: () throws -> [UInt8])? = nil,
                             wrote: (RGBImage, String) -> Void = { _, _ in }) throws {
        guard images.count == paths.count, text == nil || text!.count == images.count else {
            throw PipelineError.invalidArgument("GenerationOutput.write: \(images.count) images, \(paths.count) paths and "
                                                + "\(text.map { "\($0.count)" } ?? "no") text lists; give one of each per image")
        }
        for (i, (image, path)) in zip(images, paths).enumerated() {
            if let chunks = text?[i], !chunks.isEmpty {
                try image.writePNG(to: path, text: chunks)
            } else {
                try image.writePNG(to: path)
            }
            wrote(image, path)
        }
        guard let report else { return }
        do {
            try AtomicFile.write(try report.bytes(), to: report.path)
        } catch {
            let reason: String
            if case PipelineError.outputFailed(_, let r)? = error as? PipelineError { reason = r } else { reason = "\(error)" }
            throw PipelineError.outputFailed(path: report.path,
                                             reason: "\(reason) (only the report failed: \(paths.joined(separator: ", ")) written)")
        }
    }
}
