#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LeanCore

/// `nn.Linear`: `weight` (out, in) in the policy type, `bias` f32.
struct Linear {
    let weight: Tensor
    let bias: Tensor?

    init(_ w: WeightLoader, in inF: Int, out outF: Int, bias: Bool = true) throws {
        weight = try w.tensor("weight", shape: [outF, inF])
        self.bias = bias ? try w.tensor("bias", shape: [outF], dtype: .f32) : nil
    }

    func callAsFunction(_ x: Tensor) -> Tensor { Ops.linear(x, weight: weight, bias: bias) }
}

/// `nn.Conv2d` with square kernels.
struct Conv2d {
    let weight: Tensor
    let bias: Tensor?
    let stride: Int
    let padding: Padding2D

    init(_ w: WeightLoader, in inC: Int, out outC: Int, kernel: Int, stride: Int = 1,
         padding: Padding2D = Padding2D(0), bias: Bool = true) throws {
        weight = try w.tensor("weight", shape: [outC, inC, kernel, kernel])
        self.bias = bias ? try w.tensor("bias", shape: [outC], dtype: .f32) : nil
        self.stride = stride
        self.padding = padding
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        Ops.conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding)
    }
}

/// `nn.GroupNorm` (affine), optionally fused with the SiLU that follows it.
struct GroupNorm {
    let weight: Tensor
    let bias: Tensor
    let groups: Int
    let eps: Float

    init(_ w: WeightLoader, channels: Int, groups: Int, eps: Float) throws {
        weight = try w.tensor("weight", shape: [channels], dtype: .f32)
        bias = try w.tensor("bias", shape: [channels], dtype: .f32)
        self.groups = groups
        self.eps = eps
    }

    func callAsFunction(_ x: Tensor, silu: Bool = false, inPlace: Bool = false) -> Tensor {
        Ops.groupNorm(x, groups: groups, weight: weight, bias: bias, eps: eps, silu: silu, inPlace: inPlace)
    }
}

/// `nn.LayerNorm` over the last axis.
struct LayerNorm {
    let weight: Tensor
    let bias: Tensor
    let eps: Float

    init(_ w: WeightLoader, dim: Int, eps: Float) throws {
        weight = try w.tensor("weight", shape: [dim], dtype: .f32)
        bias = try w.tensor("bias", shape: [dim], dtype: .f32)
        self.eps = eps
    }

    func callAsFunction(_ x: Tensor) -> Tensor { Ops.layerNorm(x, weight: weight, bias: bias, eps: eps) }
}
