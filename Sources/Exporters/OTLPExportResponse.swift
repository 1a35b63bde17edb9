/// What an OTLP/HTTP receiver answers a successful export with: an `ExportTraceServiceResponse`
/// (opentelemetry-proto `collector/trace/v1/trace_service.proto`), of which the exporter needs
/// `partial_success`'s two fields. Read by hand, as the request is written (`Protobuf.swift`), so
/// that the agent carries no protobuf runtime (swift-protobuf was a third of its code); the tests
/// encode the responses they send with swift-protobuf's generated types.
struct OTLPExportResponse {
    /// `partial_success.rejected_spans`: spans the receiver dropped.
    var rejectedSpans: Int64 = 0
    /// `partial_success.error_message`: why; invalid UTF-8 is replaced, not refused.
    var errorMessage = ""

    /// Nil when `bytes` are no well-formed protobuf message. Unknown fields are skipped, and a
    /// `partial_success` that comes twice is merged, as protobuf parsers do.
    init?(serializedBytes bytes: [UInt8]) {
        var response = ProtobufReader(bytes[...])
        do {
            while let (field, value) = try response.nextField() {
                guard field == Self.partialSuccessField, case .lengthDelimited(let message) = value else { continue }
                var partialSuccess = ProtobufReader(message)
                while let (field, value) = try partialSuccess.nextField() {
                    switch (field, value) {
                    case (Self.rejectedSpansField, .varint(let count)): rejectedSpans = Int64(bitPattern: count)
                    case (Self.errorMessageField, .lengthDelimited(let text)): errorMessage = String(decoding: text, as: UTF8.self)
                    default: continue
                    }
                }
            }
        } catch {
            return nil
        }
    }

    private static let partialSuccessField = 1
    private static let rejectedSpansField = 1, errorMessageField = 2
}

/// Reads the fields of one protobuf message (https://protobuf.dev/programming-guides/encoding/)
/// in order, without a schema: each field's number and its value as the wire type gives it.
struct ProtobufReader {
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case lengthDelimited(ArraySlice<UInt8>)
        case fixed32(UInt32)
    }

    /// Bytes that are no protobuf message: the field ends past them, or a varint, wire type or
    /// field number is invalid.
    struct Malformed: Error {}

    private var rest: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) {
        rest = bytes
    }

    /// The next field, or nil at the end of the message.
    mutating func nextField() throws(Malformed) -> (field: Int, value: Value)? {
        guard !rest.isEmpty else { return nil }
        let tag = try varint()
        let field = tag >> 3
        guard field > 0, field <= 0x1FFF_FFFF else { throw Malformed() }
        switch tag & 7 {
        case 0: return (Int(field), .varint(try varint()))
        case 1: return (Int(field), .fixed64(try littleEndian(UInt64.self)))
        case 2:
            let length = try varint()
            guard length <= UInt64(rest.count) else { throw Malformed() }
            let value = rest.prefix(Int(length))
            rest = rest.dropFirst(Int(length))
            return (Int(field), .lengthDelimited(value))
        case 5: return (Int(field), .fixed32(try littleEndian(UInt32.self)))
        default: throw Malformed()   // 3 and 4 are proto2's groups, which OTLP never uses; 6 and 7 do not exist
        }
    }

    private mutating func varint() throws(Malformed) -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            guard let byte = rest.popFirst() else { throw Malformed() }
            guard shift < 63 || byte <= 1 else { throw Malformed() }   // more than 64 bits
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
        }
        throw Malformed()
    }

    private mutating func littleEndian<Integer: FixedWidthInteger>(_: Integer.Type) throws(Malformed) -> Integer {
        let size = Integer.bitWidth / 8
        guard rest.count >= size else { throw Malformed() }
        let value = rest.prefix(size).reversed().reduce(Integer.zero) { $0 << 8 | Integer($1) }
        rest = rest.dropFirst(size)
        return value
    }
}
