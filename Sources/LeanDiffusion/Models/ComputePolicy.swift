#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LeanCore

/// How the models compute. Model code is written once and reads the policy: weights are converted to `dtype` when
/// loaded (biases and norm parameters stay f32), activations are kept in `dtype`, 4-D activations in `layout`, and
/// every attention uses `attention`. Norm statistics and softmax are always f32 inside `Ops`.
public struct ComputePolicy: Sendable {
    public var dtype: DType = .f32
    public var layout: Layout = .nhwc
    public var attention: AttentionKernel = .flash

    public init(dtype: DType = .f32, layout: Layout = .nhwc, attention: AttentionKernel = .flash) {
        self.dtype = dtype
        self.layout = layout
        self.attention = attention
    }

    /// Refuses a policy this CPU cannot compute (bf16 without AVX-512) before any weight is converted.
    public func checkSupported() throws {
        guard CPUCapabilities.supports(dtype) else {
            throw PipelineError.unsupportedDType(dtype, isa: CPUCapabilities.isaName)
        }
    }

    /// `x` in the policy's activation type and (for 4-D tensors) layout.
    public func activation(_ x: Tensor) -> Tensor {
        x.converted(to: dtype).withLayout(x.rank == 4 ? layout : x.layout)
    }
}
