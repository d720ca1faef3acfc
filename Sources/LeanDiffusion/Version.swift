/// This library's version, as image metadata records it ("Version: LeanDiffusion 0.1.0").
public enum LeanDiffusionVersion {
    public static let string = "0.1.0"
}
