#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LeanCore

/// Where the weights live while a pipeline runs, the CPU analogue of diffusers' offload modes. The "device" is this
/// process's memory and the "offload device" is the checkpoint file (read back with `pread`, from the page cache
/// when it is warm), so offloading trades memory for re-reading. All modes compute the same numbers.
public enum OffloadMode: String, CaseIterable, Sendable, Codable {
    /// Every weight loaded at init and kept. Plain bytes whose packed (oneDNN) copy exists are dropped.
    case none
    /// One component resident at a time (`enable_model_cpu_offload`): the text encoder is evicted after encoding,
    /// the UNet before the VAE decode, the VAE after it; each loads again on its next use.
    case model
    /// Weights streamed through a byte budget (`enable_sequential_cpu_offload` / leaf-level group offload with
    /// prefetch): see `WeightStreamer`. Biases and norm parameters (1-D) stay resident.
    case sequential
}

/// The pipeline's offload policy: owns the weight registries of the three components and applies the mode.
final class OffloadController {
    enum Component: Int, CaseIterable { case textEncoder, unet, vae }

    let mode: OffloadMode
    let registries: [Component: WeightRegistry] = [.textEncoder: WeightRegistry(), .unet: WeightRegistry(), .vae: WeightRegistry()]
    private(set) var streamer: WeightStreamer?
    let budgetBytes: Int?

    let context: RuntimeContext

    init(mode: OffloadMode, budgetBytes: Int?, context: RuntimeContext) {
        self.mode = mode
        self.context = context
        self.budgetBytes = budgetBytes
    }

    func registry(_ c: Component) -> WeightRegistry { registries[c]! }

    /// After the models are built (their weights registered, all evicted).
    func prepare() {
        let all = Component.allCases.map(registry)
        switch mode {
        case .none:
            for r in all {
                for s in r.storages { s.parameter?.releasesPlainWhenDerived = true }
                r.loadAll()
            }
        case .model:
            for r in all { for s in r.storages { s.parameter?.releasesPlainWhenDerived = true } }
        case .sequential:
            let streamed = all.map { r in r.weights.filter { $0.shape.count > 1 }.map(\.storage) }
            // Default: room for the UNet's largest weight with its packed copy and one more. The UNet sets it: its
            // loop is what streaming must keep fed, and the one larger weight, CLIP's token embedding, is read
            // by rows from the file (`Storage.copyBytes`) and never made resident.
            let largest = streamed[Component.unet.rawValue].map(\.byteCount).max()
                ?? streamed.joined().map(\.byteCount).max() ?? 0
            // Packed copies spill to an unlinked scratch file in $TMPDIR: later steps read back the bytes the
            // kernels use (no fp32->bf16 conversion, no reorder). Without a writable directory they are rebuilt.
            let tmp = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
            let s = WeightStreamer(budgetBytes: budgetBytes ?? 3 * largest, spill: SpillFile(directory: tmp),
                                   context: context)
            for (i, r) in all.enumerated() {
                for w in r.weights where w.shape.count <= 1 { w.storage.load() }
                s.manage(streamed[i], group: i)
            }
            streamer = s
        }
    }

    /// A component finished its part of the run.
    func finished(_ c: Component) {
        switch mode {
        case .none: break
        case .model: registry(c).evictAll()
        case .sequential: streamer?.evictAll()
        }
    }

    /// The run is over: model offload leaves nothing resident (diffusers' `maybe_free_model_hooks`), sequential
    /// offload drops its window.
    func runEnded() {
        switch mode {
        case .none: break
        case .model: for r in registries.values { r.evictAll() }
        case .sequential: streamer?.evictAll()
        }
    }
}
