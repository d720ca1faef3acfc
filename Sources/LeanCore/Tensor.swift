/// A dense tensor: a shape, an element type, a physical layout for 4-D activations, and shared storage.
///
/// Tensors are values that share storage (copy-on-write is not needed: kernels always write fresh outputs, except
/// the explicitly in-place helpers). Shapes are logical: a 4-D tensor is always (N, C, H, W) whatever its layout.
public struct Tensor: Sendable, CustomStringConvertible {
    public private(set) var storage: Storage
    public let shape: [Int]
    public let dtype: DType
    public let layout: Layout
    /// Offset in bytes into `storage`, so views such as a batch slice need no copy.
    public let byteOffset: Int

    public init(storage: Storage, shape: [Int], dtype: DType, layout: Layout = .nchw, byteOffset: Int = 0) {
        precondition(shape.count == 4 || layout == .nchw, "channels-last applies to 4-D tensors only")
        precondition(byteOffset + shape.reduce(1, *) * dtype.byteSize <= storage.byteCount, "tensor exceeds storage")
        self.storage = storage
        self.shape = shape
        self.dtype = dtype
        self.layout = layout
        self.byteOffset = byteOffset
    }

    /// Whether this is the only reference to its bytes (no view, no caller's copy), so that an op may overwrite
    /// them in place. Conservative: any other tensor sharing the storage, even a view of other bytes, says no.
    public mutating func hasUniqueStorage() -> Bool { isKnownUniquelyReferenced(&storage) }

    /// A new, uninitialized tensor.
    public init(shape: [Int], dtype: DType = .f32, layout: Layout = .nchw, device: Device = .cpu, zeroed: Bool = false) {
        let n = shape.reduce(1, *)
        self.init(storage: Storage(byteCount: n * dtype.byteSize, device: device, zeroed: zeroed),
                  shape: shape, dtype: dtype, layout: layout)
    }

    public init(_ values: [Float], shape: [Int], dtype: DType = .f32, layout: Layout = .nchw) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        self.init(shape: shape, dtype: dtype, layout: layout)
        values.withUnsafeBufferPointer { Convert.fromFloat($0.baseAddress!, raw, dtype, values.count) }
    }

    public static func zeros(_ shape: [Int], dtype: DType = .f32, layout: Layout = .nchw) -> Tensor {
        Tensor(shape: shape, dtype: dtype, layout: layout, zeroed: true)
    }

    public var count: Int { shape.reduce(1, *) }
    public var byteCount: Int { count * dtype.byteSize }
    public var rank: Int { shape.count }
    public var device: Device { storage.device }
    public var raw: UnsafeMutableRawPointer { storage.raw + byteOffset }

    /// Strides in elements of the physical order, expressed for the logical axes.
    public var strides: [Int] {
        if rank == 4 && layout == .nhwc {
            let (c, h, w) = (shape[1], shape[2], shape[3])
            return [h * w * c, 1, w * c, c]
        }
        var s = [Int](repeating: 1, count: rank)
        var acc = 1
        for i in stride(from: rank - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
        return s
    }

    public func floatPointer() -> UnsafeMutablePointer<Float> {
        precondition(dtype == .f32, "expected f32, got \(dtype)")
        return raw.assumingMemoryBound(to: Float.self)
    }

    /// The elements in logical (row-major over the logical shape) order, converted to f32.
    public func toFloats() -> [Float] {
        let t = layout == .nchw ? self : self.withLayout(.nchw)
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { Convert.toFloat(t.raw, dtype, $0.baseAddress!, count) }
        return out
    }

    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) { s[i] = count / s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *) }
        precondition(s.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        precondition(layout == .nchw || s == shape, "reshape of a channels-last tensor needs a layout change first")
        return Tensor(storage: storage, shape: s, dtype: dtype, layout: layout, byteOffset: byteOffset)
    }

    /// Items `range` of the outermost axis, sharing storage.
    public func slice(batch range: Range<Int>) -> Tensor {
        let per = count / shape[0]
        var s = shape
        s[0] = range.count
        return Tensor(storage: storage, shape: s, dtype: dtype, layout: layout,
                      byteOffset: byteOffset + range.lowerBound * per * dtype.byteSize)
    }

    public func converted(to target: DType) -> Tensor { converted(to: target, planned: true) }

    /// `planned: false` for copies that outlive the running call (a weight's converted copy).
    func converted(to target: DType, planned: Bool) -> Tensor {
        if target == dtype { return self }
        let out = Tensor(storage: Storage(byteCount: count * target.byteSize, planned: planned), shape: shape,
                         dtype: target, layout: layout)
        let n = count
        let chunk = 4096
        parallelFor((n + chunk - 1) / chunk, minChunk: 16) { r in
            var buf = [Float](repeating: 0, count: chunk)
            buf.withUnsafeMutableBufferPointer { b in
                for c in r {
                    let lo = c * chunk, m = min(chunk, n - lo)
                    Convert.toFloat(raw + lo * dtype.byteSize, dtype, b.baseAddress!, m)
                    Convert.fromFloat(b.baseAddress!, out.raw + lo * target.byteSize, target, m)
                }
            }
        }
        return out
    }

    /// The same logical tensor in another physical layout (4-D only).
    public func withLayout(_ target: Layout) -> Tensor {
        if target == layout || rank != 4 { return self }
        let out = Tensor(shape: shape, dtype: dtype, layout: target)
        let (n, c, hw) = (shape[0], shape[1], shape[2] * shape[3])
        let es = dtype.byteSize
        // A transpose of (C, HW) <-> (HW, C) per image, in cache-sized tiles.
        let tile = 32
        parallelFor(n * ((c + tile - 1) / tile)) { r in
            for job in r {
                let b = job / ((c + tile - 1) / tile), c0 = (job % ((c + tile - 1) / tile)) * tile
                let c1 = min(c, c0 + tile)
                let src = raw + b * c * hw * es, dst = out.raw + b * c * hw * es
                for p in 0..<hw {
                    for ch in c0..<c1 {
                        let (si, di) = layout == .nchw ? (ch * hw + p, p * c + ch) : (p * c + ch, ch * hw + p)
                        if es == 4 {
                            (dst + di * 4).storeBytes(of: (src + si * 4).load(as: UInt32.self), as: UInt32.self)
                        } else {
                            (dst + di * 2).storeBytes(of: (src + si * 2).load(as: UInt16.self), as: UInt16.self)
                        }
                    }
                }
            }
        }
        return out
    }

    /// A deep copy with its own storage.
    public func copy() -> Tensor {
        let out = Tensor(shape: shape, dtype: dtype, layout: layout)
        out.raw.copyMemory(from: raw, byteCount: byteCount)
        return out
    }

    public var description: String { "Tensor(\(shape), \(dtype)\(rank == 4 ? ", \(layout)" : ""))" }
}
