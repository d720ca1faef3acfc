import XCTest
@testable import SafeTensors

final class ConversionTests: XCTestCase {
    func testHalfKnownValues() {
        let cases: [(UInt16, Float)] = [
            (0x0000, 0), (0x3C00, 1), (0xC000, -2), (0x3555, 0.333251953125), (0x7BFF, 65504),
            (0x0001, 5.9604644775390625e-08), (0x03FF, 6.097555160522461e-05), (0x0400, 6.103515625e-05),
            (0x7C00, .infinity), (0xFC00, -.infinity), (0x4248, 3.140625),
        ]
        for (bits, v) in cases { XCTAssertEqual(SafeTensorsConversion.halfToFloat(bits), v, "0x\(String(bits, radix: 16))") }
        XCTAssertEqual(SafeTensorsConversion.halfToFloat(0x8000).bitPattern, 0x8000_0000)
        XCTAssertTrue(SafeTensorsConversion.halfToFloat(0x7E00).isNaN)
        XCTAssertTrue(SafeTensorsConversion.halfToFloat(0xFC01).isNaN)
    }

    #if !((os(macOS) || targetEnvironment(macCatalyst)) && arch(x86_64))
    func testHalfMatchesFloat16ForAllPatterns() {
        for bits in 0...UInt16.max {
            let mine = SafeTensorsConversion.halfToFloat(bits)
            let ref = Float(Float16(bitPattern: bits))
            if ref.isNaN { XCTAssertTrue(mine.isNaN) } else { XCTAssertEqual(mine.bitPattern, ref.bitPattern, "0x\(String(bits, radix: 16))") }
        }
    }
    #endif

    func testBFloat16KnownValues() {
        let cases: [(UInt16, Float)] = [
            (0x3F80, 1), (0xC049, -3.140625), (0x4049, 3.140625), (0x7F80, .infinity), (0xFF80, -.infinity),
            (0x0001, Float(sign: .plus, exponent: -133, significand: 1)), (0x7F7F, 3.3895313892515355e+38),
        ]
        for (bits, v) in cases { XCTAssertEqual(SafeTensorsConversion.bfloat16ToFloat(bits), v, "0x\(String(bits, radix: 16))") }
        XCTAssertTrue(SafeTensorsConversion.bfloat16ToFloat(0x7FC0).isNaN)
    }

    func testFP8KnownValues() {
        XCTAssertEqual(SafeTensorsConversion.e4m3ToFloat(0x38), 1)
        XCTAssertEqual(SafeTensorsConversion.e4m3ToFloat(0xB8), -1)
        XCTAssertEqual(SafeTensorsConversion.e4m3ToFloat(0x7E), 448)
        XCTAssertEqual(SafeTensorsConversion.e4m3ToFloat(0x01), 0.001953125)
        XCTAssertEqual(SafeTensorsConversion.e4m3ToFloat(0x78), 256)  // exponent 15 is finite in the fn variant
        XCTAssertTrue(SafeTensorsConversion.e4m3ToFloat(0x7F).isNaN)
        XCTAssertEqual(SafeTensorsConversion.e5m2ToFloat(0x3C), 1)
        XCTAssertEqual(SafeTensorsConversion.e5m2ToFloat(0x7B), 57344)
        XCTAssertEqual(SafeTensorsConversion.e5m2ToFloat(0x7C), .infinity)
    }

    func testBufferConversionAllDTypes() {
        func conv(_ bytes: [UInt8], _ d: SafeTensorsDType) -> [Float] { bytes.withUnsafeBytes { SafeTensorsConversion.floats(from: $0, dtype: d) } }
        XCTAssertEqual(conv(u16Bytes([0x3C00, 0xC000]), .F16), [1, -2])
        XCTAssertEqual(conv(u16Bytes([0x3F80, 0xC049]), .BF16), [1, -3.140625])
        XCTAssertEqual(conv([0, 0, 0, 0, 0, 0, 0xF0, 0x3F], .F64), [1])
        XCTAssertEqual(conv([0xFF, 0xFF, 0xFF, 0xFF], .I32), [-1])
        XCTAssertEqual(conv([0, 0, 1, 0x80], .U32), [2147549184])
        XCTAssertEqual(conv([0xFE, 0xFF], .I16), [-2])
        XCTAssertEqual(conv([0x80, 3], .I8), [-128, 3])
        XCTAssertEqual(conv([0x80, 3], .U8), [128, 3])
        XCTAssertEqual(conv([0, 2], .BOOL), [0, 1])
        XCTAssertEqual(conv([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], .I64), [-1])
        // Unaligned source: conversion must not assume alignment.
        let unaligned: [UInt8] = [9] + SafeTensorsWriter.littleEndianBytes([1.5, -4])
        let got = unaligned.withUnsafeBytes { SafeTensorsConversion.floats(from: UnsafeRawBufferPointer(rebasing: $0[1...]), dtype: .F32) }
        XCTAssertEqual(got, [1.5, -4])
    }
}
