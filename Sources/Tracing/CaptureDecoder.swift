import Planning
import Spans

/// Reads capture values out of a span record's data area.
enum CaptureDecoder {
    /// Values of the captures the BPF side actually wrote; absent ones are left out.
    static func decode(_ event: SpanEvent, slots: [CaptureSlot]) -> [String: AttributeValue] {
        var values: [String: AttributeValue] = [:]
        for (index, slot) in slots.enumerated() {
            guard index < 32, event.capturedMask & (1 << UInt32(index)) != 0 else {
                if let fallback = slot.ifAbsent { values[slot.name] = .int(fallback) }
                continue
            }
            guard slot.offset + slot.size <= event.data.count else { continue }
            let bytes = event.data[slot.offset..<(slot.offset + slot.size)]
            switch slot.type {
            case .goString:
                let length = min(Int(integer(bytes, size: 2)), slot.maxLength)
                let start = bytes.startIndex + 2
                values[slot.name] = .string(String(decoding: bytes[start..<(start + length)], as: UTF8.self))
            case .int:
                values[slot.name] = intValue(Int64(bitPattern: integer(bytes, size: 8)), slot)
            case .int32:
                values[slot.name] = intValue(Int64(Int32(truncatingIfNeeded: integer(bytes, size: 4))), slot)
            case .uint16:
                values[slot.name] = intValue(Int64(integer(bytes, size: 2)), slot)
            case .bool:
                values[slot.name] = .bool(integer(bytes, size: 1) != 0)
            case .nonNil:
                values[slot.name] = .bool(integer(bytes, size: 8) != 0)
            }
        }
        return values
    }

    private static func intValue(_ value: Int64, _ slot: CaptureSlot) -> AttributeValue {
        .int(value == 0 ? slot.ifZero ?? 0 : value)
    }

    /// Little-endian unsigned integer of `size` bytes.
    private static func integer(_ bytes: ArraySlice<UInt8>, size: Int) -> UInt64 {
        bytes.prefix(size).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}
