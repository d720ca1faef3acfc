#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SafeTensors

extension StableDiffusionPipeline {
    /// Checks that the folder's components fit together before any weight is read; each failure is a
    /// `PipelineError.incompatibleComponents` naming both files and fields.
    static func checkCompatibility(directory: String, tokenizer: CLIPTokenizer, text: CLIPTextConfig,
                                   unet: UNetConfig, vae: VAEConfig, scheduler: SchedulerConfig, kind: String,
                                   schedulerPath: String) throws {
        let (t, u, v) = (directory + "/text_encoder/config.json", directory + "/unet/config.json",
                         directory + "/vae/config.json")
        let tok = directory + "/tokenizer"
        func fail(_ m: String) -> PipelineError { .incompatibleComponents(m) }
        guard unet.crossAttentionDim == text.hiddenSize else {
            throw fail("\(u) has cross_attention_dim \(unet.crossAttentionDim) but \(t) has hidden_size \(text.hiddenSize); "
                       + "the UNet and the text encoder come from different models")
        }
        guard tokenizer.maxLength <= text.maxPositionEmbeddings else {
            throw fail("\(tok)/tokenizer_config.json has model_max_length \(tokenizer.maxLength) but \(t) has "
                       + "max_position_embeddings \(text.maxPositionEmbeddings); lower model_max_length to at most that")
        }
        guard tokenizer.maxTokenId < text.vocabSize else {
            throw fail("\(tok)/vocab.json has token id \(tokenizer.maxTokenId) but \(t) has vocab_size \(text.vocabSize); "
                       + "the tokenizer and the text encoder come from different models")
        }
        // An inpainting UNet takes latents, the mask and the masked picture's latents (latent channels + 5).
        guard unet.inChannels == vae.latentChannels || unet.inChannels == vae.latentChannels + 5 else {
            throw fail("\(u) has in_channels \(unet.inChannels) but \(v) has latent_channels \(vae.latentChannels) "
                       + "(a UNet takes that many, or that + 5 for inpainting); the UNet and the VAE come from different models")
        }
        guard unet.outChannels == vae.latentChannels else {
            throw fail("\(u) has out_channels \(unet.outChannels) but \(v) has latent_channels \(vae.latentChannels)")
        }
        // The folder's own scheduler must be buildable (diffusers builds it at load too).
        if let k = SchedulerKind(diffusersClassName: kind) {
            do { _ = try k.make(config: scheduler, steps: 1) } catch {
                throw PipelineError.invalidConfig(file: schedulerPath, field: "-", reason: "\(error)")
            }
        }
    }
}

extension StableDiffusionPipeline {
    /// A config file's bytes, refusing FIFOs, directories and devices before they can block or mislead.
    static func readInputFile(_ path: String) throws -> Data {
        do { return Data(try RegularFile.read(path)) } catch {
            if error.reason == .notFound { throw PipelineError.missingFile(path) }
            throw PipelineError.unreadableFile(path: path, reason: error.message)
        }
    }
}
