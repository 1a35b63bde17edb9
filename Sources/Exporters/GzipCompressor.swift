import CZlib
import Synchronization

/// Compresses OTLP request bodies to gzip (RFC 1952) with zlib, the `Content-Encoding: gzip`
/// every OTLP/HTTP receiver accepts.
///
/// One deflate stream is kept and reset between bodies, so a batch costs no zlib allocation.
/// The corresponding C functions are `deflateInit2` (through `sonde_deflate_init_gzip` in
/// `Sources/CZlib/shim.h`), `deflateBound`, `deflate`, `deflateReset` and `deflateEnd`.
public final class GzipCompressor: Sendable {
    /// zlib's stream points back at this address, so it lives on the heap and never moves.
    private let stream: Mutex<UnsafeMutablePointer<z_stream>?> = Mutex(nil)

    /// Level 1 (`Z_BEST_SPEED`): protobuf spans shrink several times even so, and the agent's CPU
    /// budget per span is a few microseconds.
    private static let level: Int32 = 1

    public init() {}

    deinit {
        stream.withLock { stream in
            guard let stream else { return }
            deflateEnd(stream)
            stream.deallocate()
        }
    }

    /// `data` as one gzip member.
    /// - Throws: `SpanExportError.rejected` when zlib fails (it can only run out of memory).
    public func compress(_ data: [UInt8]) throws(SpanExportError) -> [UInt8] {
        let result: Result<[UInt8], SpanExportError> = stream.withLock { stream in
            if stream == nil {
                let newStream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
                newStream.initialize(to: z_stream())
                let status = sonde_deflate_init_gzip(newStream, Self.level)
                guard status == Z_OK else {
                    newStream.deallocate()
                    return .failure(.rejected(reason: "gzip: deflateInit2 failed with zlib status \(status)"))
                }
                stream = newStream
            }
            return Self.deflate(data, with: stream!)
        }
        return try result.get()
    }

    private static func deflate(
        _ data: [UInt8], with stream: UnsafeMutablePointer<z_stream>
    ) -> Result<[UInt8], SpanExportError> {
        defer { deflateReset(stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(stream, uLong(data.count))))
        let status = data.withUnsafeBytes { input in
            output.withUnsafeMutableBytes { output in
                // zlib reads next_in without writing it; the field is not const only for old compilers.
                stream.pointee.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
                stream.pointee.avail_in = uInt(input.count)
                stream.pointee.next_out = output.bindMemory(to: Bytef.self).baseAddress
                stream.pointee.avail_out = uInt(output.count)
                return CZlib.deflate(stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END else {
            return .failure(.rejected(reason: "gzip: deflate failed with zlib status \(status)"))
        }
        output.removeLast(output.count - Int(stream.pointee.total_out))
        return .success(output)
    }
}
