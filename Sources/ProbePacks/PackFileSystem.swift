import Foundation

/// Pack files and folders as the file system has them; the one place in ProbePacks that calls libc.
///
/// Foundation's `String(contentsOfFile:)` opens whatever the path names: a FIFO blocks until a
/// writer comes, `/dev/zero` never ends, and the errors it gives ("You don't have permission",
/// "NSCocoaErrorDomain error 256") do not say what is wrong. Here a path is examined with
/// `stat(2)` before it is opened, and read only when it is a regular file of a bounded size.
enum PackFileSystem {
    /// What `stat(2)` says of a path, following symbolic links.
    struct Status {
        let mode: mode_t
        let size: Int
        let id: FileID

        var isRegularFile: Bool { mode & S_IFMT == S_IFREG }
        var isFolder: Bool { mode & S_IFMT == S_IFDIR }

        /// What the path is, for a message that says why it is not read: "a FIFO (named pipe)".
        var kind: String {
            switch mode & S_IFMT {
            case S_IFREG: "a regular file"
            case S_IFDIR: "a folder"
            case S_IFIFO: "a FIFO (named pipe)"
            case S_IFCHR: "a character device"
            case S_IFBLK: "a block device"
            case S_IFSOCK: "a socket"
            default: "a special file"
            }
        }
    }

    /// A file's identity, to recognise a folder reached again through a symbolic link.
    struct FileID: Hashable {
        let device: UInt64
        let inode: UInt64
    }

    /// Why a path could not be examined, read or listed.
    struct Failure: Error {
        let reason: String

        init(errno code: Int32) {
            reason =
                switch code {
                case ENOENT: "no such file or folder"
                case EACCES, EPERM: "permission denied"
                case ELOOP: "its symbolic links form a loop"
                case ENOTDIR: "a part of its path is not a folder"
                case ENAMETOOLONG: "its path is too long"
                default: String(cString: strerror(code))
                }
        }

        init(reason: String) {
            self.reason = reason
        }
    }

    /// The corresponding C function is `stat(2)`.
    static func status(of path: String) -> Result<Status, Failure> {
        var buffer = stat()
        guard stat(path, &buffer) == 0 else { return .failure(Failure(errno: errno)) }
        return .success(Status(buffer))
    }

    /// The contents of a regular file of at most `limit` bytes.
    ///
    /// The path is opened with `O_NONBLOCK`, so that a FIFO put in its place after `stat(2)`
    /// cannot block the open, and what was opened is checked again with `fstat(2)`.
    /// - Throws: ``PackError`` for the file as a whole.
    static func readRegularFile(_ path: String, limit: Int) throws -> Data {
        func refuse(_ reason: String) -> PackError {
            PackError(SourceLocation(wholeFile: path), "cannot read the pack file: \(reason)")
        }
        func tooLarge(_ size: Int?) -> PackError {
            let bytes = size.map { " (\($0) bytes)" } ?? ""
            return PackError(
                SourceLocation(wholeFile: path),
                "the pack file is larger than \(mebibytes(limit))\(bytes); a pack is a short YAML file"
            )
        }
        let status: Status
        switch self.status(of: path) {
        case .failure(let failure): throw refuse(failure.reason)
        case .success(let found): status = found
        }
        guard status.isRegularFile else { throw refuse("it is \(status.kind), not a regular file") }
        guard status.size <= limit else { throw tooLarge(status.size) }
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw refuse(Failure(errno: errno).reason) }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        var opened = stat()
        guard fstat(descriptor, &opened) == 0 else { throw refuse(Failure(errno: errno).reason) }
        let openedStatus = Status(opened)
        guard openedStatus.isRegularFile else { throw refuse("it is \(openedStatus.kind), not a regular file") }
        let data: Data
        do {
            data = try handle.read(upToCount: limit + 1) ?? Data()
        } catch {
            throw refuse(error.localizedDescription)
        }
        // The file may have grown since stat(2), or (in /proc) report no size at all.
        guard data.count <= limit else { throw tooLarge(nil) }
        return data
    }

    /// `1048576` as "1 MiB", for limits that are whole mebibytes.
    private static func mebibytes(_ count: Int) -> String {
        count % (1 << 20) == 0 ? "\(count >> 20) MiB" : "\(count) bytes"
    }

    /// The names in a folder, unsorted.
    static func contents(ofFolder path: String) throws(Failure) -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
            if let underlying, underlying.domain == NSPOSIXErrorDomain {
                throw Failure(errno: Int32(underlying.code))
            }
            throw Failure(reason: error.localizedDescription)
        }
    }
}

extension PackFileSystem.Status {
    fileprivate init(_ buffer: stat) {
        self.init(
            mode: buffer.st_mode,
            size: Int(buffer.st_size),
            id: PackFileSystem.FileID(device: UInt64(buffer.st_dev), inode: UInt64(buffer.st_ino))
        )
    }
}
