import LeanCore

/// NaN/Inf checks between the pipeline's phases: a damaged weight or an overflowing half-precision activation
/// becomes a named error (which component, which step) instead of a black or white image.
enum FiniteCheck {
    /// How many of `values` are NaN or infinite.
    static func nonFiniteCount(_ values: UnsafeBufferPointer<Float>) -> Int {
        var n = 0
        for v in values where !v.isFinite { n += 1 }
        return n
    }

    static func require(_ values: [Float], _ component: String, step: Int? = nil, of total: Int? = nil) throws {
        let n = values.withUnsafeBufferPointer(nonFiniteCount)
        guard n == 0 else {
            throw PipelineError.nonFinite(component: component, step: step, totalSteps: total, count: n, total: values.count)
        }
    }

    static func require(_ t: Tensor, _ component: String, step: Int? = nil, of total: Int? = nil) throws {
        let f = t.converted(to: .f32)
        let n = nonFiniteCount(UnsafeBufferPointer(start: f.floatPointer(), count: f.count))
        guard n == 0 else {
            throw PipelineError.nonFinite(component: component, step: step, totalSteps: total, count: n, total: f.count)
        }
    }
}

extension StableDiffusionPipeline {
    /// `decode` with the decoder's output checked for NaN/Inf before it is clamped to 8 bits.
    func decodeChecked(_ latents: [Float], shape: [Int]) throws -> [RGBImage] {
        let scale = vaeConfig.scalingFactor
        let z = Tensor(latents.map { $0 / scale }, shape: shape).converted(to: policy.dtype).withLayout(policy.layout)
        let decoded = vae.decode(z, options: vaeOptions).converted(to: .f32).withLayout(.nchw)
        try FiniteCheck.require(decoded, "the VAE decoder")
        let (b, h, w) = (decoded.shape[0], decoded.shape[2], decoded.shape[3])
        let p = decoded.floatPointer()
        return (0..<b).map { RGBImage(decoded: p + $0 * 3 * h * w, width: w, height: h) }
    }
}
