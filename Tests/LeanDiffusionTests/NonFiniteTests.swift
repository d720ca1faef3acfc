import XCTest
import LeanDiffusion

/// NaN/Inf from a damaged weight is a named error saying which component and step, never a trap and never a
/// silently white or black image.
final class NonFiniteTests: XCTestCase {
    func testInfInTheVAEIsNamed() throws {
        let dir = try ErrorTestSupport.scratchCopy(self)
        try ErrorTestSupport.editTensor(dir + "/vae/diffusion_pytorch_model.safetensors", "decoder.conv_out.bias") { $0[0] = .infinity }
        let pipe = try StableDiffusionPipeline(directory: dir)
        expectError("the VAE decoder produced NaN/Inf") { _ = try pipe.generate(ErrorTestSupport.tinyRequest()) }
    }

    func testNaNInTheUNetIsNamedWithTheStep() throws {
        let dir = try ErrorTestSupport.scratchCopy(self)
        try ErrorTestSupport.editTensor(dir + "/unet/diffusion_pytorch_model.safetensors", "conv_out.bias") { $0[1] = .nan }
        let pipe = try StableDiffusionPipeline(directory: dir)
        expectError("the UNet produced NaN/Inf at step 1 of 3") { _ = try pipe.generate(ErrorTestSupport.tinyRequest(steps: 2)) }
    }

    /// The conversion to 8 bits is itself safe: NaN becomes 0, infinities clamp.
    func testPixelConversionNeverTraps() {
        let values: [Float] = [.nan, .infinity, -.infinity, 0, 1, -1, .nan, 2, -2, 0.5, .nan, 0]
        let image = values.withUnsafeBufferPointer { RGBImage(decoded: $0.baseAddress!, width: 2, height: 2) }
        // planes: R = [nan, inf, -inf, 0], G = [1, -1, nan, 2], B = [-2, 0.5, nan, 0]
        XCTAssertEqual(image.pixels, [0, 255, 0, 255, 0, 191, 0, 0, 0, 128, 255, 128])
    }
}
