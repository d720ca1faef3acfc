import XCTest
@testable import SafeTensors

final class StrictJSONTests: XCTestCase {
    func testValuesAndEscapes() throws {
        let v = try StrictJSON.parse(#" {"a": [1, -0, 2.5e-3, true, false, null], "s": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "o": {}} "#)
        XCTAssertEqual(v["a"], .array([.number("1"), .number("-0"), .number("2.5e-3"), .bool(true), .bool(false), .null]))
        XCTAssertEqual(v["s"]?.stringValue, "x\"\\/\u{8}\u{c}\n\r\té😀")
        XCTAssertEqual(v["o"], .object([]))
        XCTAssertEqual(v.objectMembers?.map(\.key), ["a", "s", "o"])
        XCTAssertEqual(StrictJSON.Value.number("12").intValue, 12)
        XCTAssertNil(StrictJSON.Value.number("1.0").intValue)
        XCTAssertNil(StrictJSON.Value.number("9223372036854775808").intValue)
        XCTAssertEqual(StrictJSON.Value.number("-9223372036854775808").intValue, Int.min)
        XCTAssertEqual(try StrictJSON.parse("\"\\u0000\"").stringValue, "\u{0}")
        XCTAssertEqual(try StrictJSON.parse("\"日本\"").stringValue, "日本")
    }

    func testRejections() {
        for bad in ["", " ", "{", "}", "[1,]", "[,1]", "{\"a\"}", "{\"a\":1 \"b\":2}", "01", "1.", ".5", "+1", "1e", "-",
                    "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\u12\"", "\"\\uZZZZ\"", "\"\\q\"", "\"a", "\"\t\"",
                    "nul", "True", "NaN", "Infinity", "1 2", "{\"a\":1}}", "\u{FEFF}{}", "[1]x", "{\"a\":1,\"a\":2}"] {
            XCTAssertThrowsError(try StrictJSON.parse(bad), "accepted \(bad.debugDescription)")
        }
        XCTAssertThrowsError(try StrictJSON.parse([0x22, 0xC3, 0x28, 0x22]))  // invalid UTF-8 in a string
        XCTAssertThrowsError(try StrictJSON.parse([0x22, 0xED, 0xA0, 0x80, 0x22]))  // encoded surrogate
        XCTAssertNoThrow(try StrictJSON.parse("{\"a\":1,\"a\":2}", allowDuplicateKeys: true))
        XCTAssertEqual(try StrictJSON.parse("{\"a\":1,\"a\":2}", allowDuplicateKeys: true)["a"], .number("2"))
    }

    func testDepthLimit() {
        let ok = String(repeating: "[", count: StrictJSON.maxDepth) + String(repeating: "]", count: StrictJSON.maxDepth)
        XCTAssertNoThrow(try StrictJSON.parse(ok))
        let tooDeep = "[" + ok + "]"
        XCTAssertThrowsError(try StrictJSON.parse(tooDeep)) { XCTAssertEqual(($0 as? StrictJSON.ParseError)?.kind, .tooDeep) }
        // Deep enough to overflow the stack without a limit.
        XCTAssertThrowsError(try StrictJSON.parse(String(repeating: "{\"a\":", count: 100_000)))
    }
}
