extension Duration {
    /// The duration as floating-point seconds: what reports, logs and benches print.
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}
