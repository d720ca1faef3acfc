/// What an image's infotext names as having made it, besides the request: the model, a replacement VAE and the
/// LoRAs, each as A1111 writes them ("Model hash", "Model", "VAE hash", "VAE", "Lora hashes").
public struct ModelProvenance: Sendable, Equatable {
    public struct LoRAHash: Sendable, Equatable {
        public var name: String
        public var hash: String
        public init(name: String, hash: String) {
            self.name = name
            self.hash = hash
        }
    }

    public var modelHash: String?
    public var model: String?
    public var vaeHash: String?
    public var vae: String?
    public var loraHashes: [LoRAHash]

    public init(modelHash: String? = nil, model: String? = nil, vaeHash: String? = nil, vae: String? = nil,
                loraHashes: [LoRAHash] = []) {
        self.modelHash = modelHash
        self.model = model
        self.vaeHash = vaeHash
        self.vae = vae
        self.loraHashes = loraHashes
    }

    /// Hashes what a pipeline was loaded from (streaming the files: seconds for SD 1.5). A hash that cannot be
    /// computed is left out with a warning rather than failing the caller: metadata never costs an image.
    public static func compute(modelPath: String, variant: String?, vaePath: String?, loras: [LoRASpec])
        -> (provenance: ModelProvenance, warnings: [String]) {
        var p = ModelProvenance(model: ModelHash.name(forModel: modelPath))
        var warnings: [String] = []
        do { p.modelHash = try ModelHash.shortHash(forModel: modelPath, variant: variant) } catch {
            warnings.append("no model hash in the metadata: \(error)")
        }
        if let vaePath {
            do { (p.vaeHash, p.vae) = try ModelHash.vae(path: vaePath) } catch {
                warnings.append("no VAE hash in the metadata: \(error)")
            }
        }
        for lora in loras {
            do {
                p.loraHashes.append(LoRAHash(name: ModelHash.loraName(path: lora.path),
                                             hash: try ModelHash.loraShortHash(path: lora.path)))
            } catch {
                warnings.append("no hash for LoRA \(lora.path) in the metadata: \(error)")
            }
        }
        return (p, warnings)
    }

    /// A1111's `Lora hashes` field ("name: hash, name: hash"), nil without LoRAs.
    public var loraHashesField: InfotextField? {
        guard !loraHashes.isEmpty else { return nil }
        return InfotextField("Lora hashes", loraHashes.map { "\($0.name): \($0.hash)" }.joined(separator: ", "))
    }
}
