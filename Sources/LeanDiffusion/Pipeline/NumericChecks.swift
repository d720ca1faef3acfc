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
