import XCTest
import LeanCore
import SafeTensors

/// Every kernel against PyTorch's output for the same inputs (fixtures from tools/make_op_fixtures.py).
///
/// Error measure: max |ours - torch| / max |torch| over the tensor. Tolerances: f32 1e-5 (rounding only), bf16 1.5e-2
/// (8-bit mantissa inputs and outputs). Each case runs in NCHW and NHWC where layout matters.
final class OpParityTests: XCTestCase {
    struct Case {
        let file: SafeTensorsFile
        func tensor(_ name: String, _ dtype: DType = .f32) throws -> Tensor {
            let info = try XCTUnwrap(file.info(name), "fixture lacks \(name)")
            return Tensor(try file.floats(name), shape: info.shape.isEmpty ? [1] : info.shape, dtype: dtype)
        }
        func floats(_ name: String) throws -> [Float] { try file.floats(name) }
        func meta<T: Decodable>(_ key: String, _ type: T.Type) throws -> T {
            let text = try XCTUnwrap(file.metadata[key], "fixture lacks metadata \(key)")
            return try JSONDecoder().decode(T.self, from: Data(text.utf8))
        }
    }

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/ops")

    func load(_ name: String) throws -> Case {
        Case(file: try SafeTensorsFile(path: Self.fixtures.appendingPathComponent(name + ".safetensors").path))
    }

    static func tolerance(_ d: DType) -> Float { d == .f32 ? 1e-5 : 1.5e-2 }

    func assertClose(_ got: Tensor, _ want: [Float], _ dtype: DType, _ what: String,
                     tolerance: Float? = nil, file: StaticString = #filePath, line: UInt = #line) {
        let g = got.toFloats()
        XCTAssertEqual(g.count, want.count, "\(what): element count", file: file, line: line)
        guard g.count == want.count else { return }
        var maxDiff: Float = 0, maxRef: Float = 0
        for i in 0..<g.count {
            maxDiff = max(maxDiff, abs(g[i] - want[i]))
            maxRef = max(maxRef, abs(want[i]))
        }
        let rel = maxDiff / max(maxRef, 1e-12)
        XCTAssert(rel <= (tolerance ?? Self.tolerance(dtype)), "\(what) [\(dtype)]: relative error \(rel)",
                  file: file, line: line)
        XCTAssertFalse(g.contains { !$0.isFinite }, "\(what): non-finite output", file: file, line: line)
    }

    /// bf16 only where oneDNN has bf16 kernels (AVX-512).
    let dtypes: [DType] = [DType.f32, .bf16, .f16].filter(CPUCapabilities.supports)
    let layouts: [Layout] = [.nchw, .nhwc]

    func testConvolution() throws {
        for name in ["conv3x3", "conv3x3_stride2", "conv_vae_downsample", "conv1x1"] {
            let c = try load(name)
            let stride = try c.meta("stride", Int.self)
            let p = try c.meta("padding", [Int].self)
            let bias = c.file.info("bias") != nil ? try c.tensor("bias") : nil
            for dtype in dtypes {
                for layout in layouts {
                    let x = try c.tensor("x", dtype).withLayout(layout)
                    let y = Ops.conv2d(x, weight: try c.tensor("weight", dtype), bias: bias, stride: stride,
                                       padding: Padding2D(top: p[0], left: p[1], bottom: p[2], right: p[3]))
                    XCTAssertEqual(y.layout, layout)
                    XCTAssertEqual(y.dtype, dtype)
                    assertClose(y, try c.floats("out"), dtype, "\(name) \(layout)")
                }
            }
        }
    }

    func testLinear() throws {
        for name in ["linear", "linear_nobias"] {
            let c = try load(name)
            for dtype in dtypes {
                let bias = c.file.info("bias") != nil ? try c.tensor("bias", dtype) : nil
                let y = Ops.linear(try c.tensor("x", dtype), weight: try c.tensor("weight", dtype), bias: bias)
                XCTAssertEqual(y.shape, [3, 5, 20])
                assertClose(y, try c.floats("out"), dtype, name)
            }
        }
    }

    func testGroupNorm() throws {
        for name in ["group_norm", "group_norm_silu", "group_norm_3d"] {
            let c = try load(name)
            let groups = try c.meta("groups", Int.self), eps = try c.meta("eps", Float.self)
            let silu = try c.meta("silu", Bool.self)
            for dtype in dtypes {
                for layout in (name == "group_norm_3d" ? [Layout.nchw] : layouts) {
                    let x = try c.tensor("x", dtype).withLayout(layout)
                    let y = Ops.groupNorm(x, groups: groups, weight: try c.tensor("weight"), bias: try c.tensor("bias"),
                                          eps: eps, silu: silu)
                    assertClose(y, try c.floats("out"), dtype, "\(name) \(layout)")
                    // In place: the same numbers, written over the input's bytes.
                    let x2 = try c.tensor("x", dtype).withLayout(layout).copy()
                    let y2 = Ops.groupNorm(x2, groups: groups, weight: try c.tensor("weight"), bias: try c.tensor("bias"),
                                           eps: eps, silu: silu, inPlace: true)
                    XCTAssertEqual(y2.raw, x2.raw, "\(name) in place")
                    XCTAssertEqual(y2.toFloats(), y.toFloats(), "\(name) \(layout) in place")
                }
            }
        }
    }

    func testLayerNorm() throws {
        let c = try load("layer_norm")
        for dtype in dtypes {
            let y = Ops.layerNorm(try c.tensor("x", dtype), weight: try c.tensor("weight"), bias: try c.tensor("bias"),
                                  eps: try c.meta("eps", Float.self))
            assertClose(y, try c.floats("out"), dtype, "layer_norm")
        }
    }

    func testActivations() throws {
        let ops: [(String, (Tensor) -> Tensor)] = [("silu", Ops.silu), ("gelu", Ops.gelu), ("gelu_tanh", Ops.geluTanh),
                                                   ("quick_gelu", Ops.quickGelu), ("geglu", Ops.geglu),
                                                   ("softmax", Ops.softmax)]
        for (name, op) in ops {
            let c = try load(name)
            for dtype in dtypes {
                assertClose(op(try c.tensor("x", dtype)), try c.floats("out"), dtype, name)
            }
        }
    }

    func testBinary() throws {
        let c = try load("binary")
        for dtype in dtypes {
            let a = try c.tensor("a", dtype), b = try c.tensor("b", dtype)
            assertClose(Ops.add(a, b), try c.floats("add"), dtype, "add")
            let b2 = try c.tensor("b", dtype).copy()
            let sum = Ops.add(a, b2, into: b2)
            XCTAssertEqual(sum.raw, b2.raw, "add into its input")
            assertClose(sum, try c.floats("add"), dtype, "add in place")
            assertClose(Ops.mul(a, b), try c.floats("mul"), dtype, "mul")
            assertClose(Ops.axpby(a, 0.7, b, -1.3), try c.floats("axpby"), dtype, "axpby")
        }
        let cb = try load("add_channel_bias")
        for dtype in dtypes {
            for layout in layouts {
                let y = Ops.addChannelBias(try cb.tensor("x", dtype).withLayout(layout), try cb.tensor("v"))
                assertClose(y, try cb.floats("out"), dtype, "add_channel_bias \(layout)")
            }
        }
    }

    func testShapeOps() throws {
        let up = try load("upsample_nearest2x")
        let cat = try load("concat_channels")
        for dtype in dtypes {
            for layout in layouts {
                let y = Ops.upsampleNearest2x(try up.tensor("x", dtype).withLayout(layout))
                XCTAssertEqual(y.shape, [2, 3, 10, 8])
                assertClose(y, try up.floats("out"), dtype, "upsample \(layout)")
                let z = Ops.concat([try cat.tensor("a", dtype).withLayout(layout), try cat.tensor("b", dtype).withLayout(layout)], axis: 1)
                XCTAssertEqual(z.shape, [2, 8, 4, 5])
                assertClose(z, try cat.floats("out"), dtype, "concat \(layout)")
            }
        }
        // Batch concatenation (classifier-free guidance doubles the batch this way).
        let a = try cat.tensor("a"), b = Ops.scale(a, 2)
        let ab = Ops.concat([a, b], axis: 0)
        XCTAssertEqual(ab.shape, [4, 3, 4, 5])
        XCTAssertEqual(Array(ab.toFloats()[a.count...]), b.toFloats())
        XCTAssertEqual(ab.slice(batch: 2..<4).toFloats(), b.toFloats())

        let e = try load("embedding")
        for dtype in dtypes {
            let ids = try e.floats("ids").map { Int32($0) }
            assertClose(Ops.embedding(ids, table: try e.tensor("table", dtype)), try e.floats("out"), dtype, "embedding")
        }
    }

    func testTimestepEmbedding() throws {
        for name in ["timestep_embedding", "timestep_embedding_shift1"] {
            let c = try load(name)
            let y = Ops.timestepEmbedding(try c.floats("t"), dim: try c.meta("dim", Int.self),
                                          flipSinToCos: try c.meta("flip", Bool.self),
                                          downscaleFreqShift: try c.meta("shift", Float.self))
            // Arguments reach t·freq ≈ 1000 rad, so one ulp of difference in a frequency (torch's exp is not
            // correctly rounded) moves sin/cos by up to 1000 · 6e-8 ≈ 6e-5. That conditioning, not the kernel,
            // sets the tolerance.
            assertClose(y, try c.floats("out"), .f32, name, tolerance: 1e-4)
        }
    }

    func testAttention() throws {
        let context = RuntimeContext()
        for name in ["attention_self", "attention_cross", "attention_causal"] {
            let c = try load(name)
            let heads = try c.meta("heads", Int.self), causal = try c.meta("causal", Bool.self)
            // Flash through the register kernel (never GEMM) and through oneDNN tiles (always GEMM).
            for threshold in [Int.max, 0] {
              context.settings.flashGEMMThreshold = threshold
              for dtype in dtypes {
                for kernel in [AttentionKernel.standard, .flash, .sliced(headsPerSlice: 1), .sliced(headsPerSlice: 0)] {
                    let (q, k, v) = (try c.tensor("q", dtype), try c.tensor("k", dtype), try c.tensor("v", dtype))
                    let y = context.run { Ops.attention(q: q, k: k, v: v, heads: heads, causal: causal, kernel: kernel) }
                    XCTAssertEqual(y.dtype, dtype)
                    assertClose(y, try c.floats("out"), dtype, "\(name) \(kernel) gemm-threshold \(threshold)")
                }
              }
            }
        }
    }

    /// Flash attention's workspace is a few tiles per thread whatever the sequence length; the standard form's
    /// tracked peak includes the full score matrix.
    func testAttentionMemory() {
        let n = 1024, heads = 2, d = 40
        let q = Tensor([Float](repeating: 0.01, count: 2 * n * heads * d), shape: [2, n, heads * d])
        let tracker = RuntimeContext.current.tracker
        tracker.resetPeak(.cpu)
        let base = tracker.current(.cpu)
        _ = Ops.attention(q: q, k: q, v: q, heads: heads, kernel: .flash)
        let flashPeak = tracker.peak(.cpu) - base
        tracker.resetPeak(.cpu)
        _ = Ops.attention(q: q, k: q, v: q, heads: heads, kernel: .standard)
        let standardPeak = tracker.peak(.cpu) - base
        // Flash holds its output plus bounded tiles: per-thread workspaces (register kernel) or one score tile of
        // at most `flashTileBudget` with its accumulators (oneDNN tiles).
        let tiles = max(Threads.count * Ops.flashWorkspaceBytes(headDim: d, keys: n), 2 * Ops.flashTileBudget)
        XCTAssertLessThanOrEqual(flashPeak, q.byteCount + tiles, "flash allocates its output and bounded tiles")
        XCTAssertGreaterThanOrEqual(standardPeak, 2 * heads * n * n * 4, "standard holds the f32 score matrix")
    }

    func testLayoutRoundTrip() {
        let values = (0..<(2 * 3 * 4 * 5)).map { Float($0) }
        let t = Tensor(values, shape: [2, 3, 4, 5])
        let nhwc = t.withLayout(.nhwc)
        XCTAssertEqual(nhwc.strides, [60, 1, 15, 3])
        // Channels-last memory order: the channel index varies fastest.
        let raw = UnsafeBufferPointer(start: nhwc.floatPointer(), count: values.count)
        XCTAssertEqual(Array(raw.prefix(3)), [0, 20, 40])
        XCTAssertEqual(nhwc.toFloats(), values)
        XCTAssertEqual(t.converted(to: .bf16).converted(to: .f32).toFloats(), values, "small integers are exact in bf16")
    }

    func testMemoryTrackerPeak() {
        let tracker = RuntimeContext.current.tracker
        tracker.resetPeak(.cpu)
        let before = tracker.current(.cpu)
        do {
            let t = Tensor(shape: [1024, 1024])
            XCTAssertEqual(tracker.current(.cpu) - before, t.byteCount)
        }
        XCTAssertEqual(tracker.current(.cpu), before, "storage is released with its last tensor")
        XCTAssertGreaterThanOrEqual(tracker.peak(.cpu) - before, 4 << 20)
        tracker.resetPeak(.cpu)
        XCTAssertEqual(tracker.peak(.cpu), tracker.current(.cpu))
    }
}
