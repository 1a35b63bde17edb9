import Foundation
import TestSupport
import XCTest

/// A real PostgreSQL (Debian's), in a temporary directory of its own, as the `postgres` user,
/// on loopback and a free port, with one database; stopped and removed by `stop()`.
final class PostgresServer {
    static let database = "sonde_test"
    let directory: String
    let port: Int
    private let bin: String
    private let setpriv: String

    init() throws {
        bin = TestEnvironment.setting("POSTGRES_BIN")
        setpriv = try TestEnvironment.tool("SETPRIV")
        guard FileManager.default.isExecutableFile(atPath: "\(bin)/initdb") else { throw TestEnvironment.missingInstall("PostgreSQL at \(bin)") }
        guard let account = getpwnam("postgres") else { throw TestEnvironment.missingInstall("the postgres user (Debian's postgresql)") }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sonde-postgres-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        guard chown(directory, account.pointee.pw_uid, account.pointee.pw_gid) == 0 else {
            throw E2EError("cannot give \(directory) to postgres: \(String(cString: strerror(errno)))")
        }
        port = try freePort()
        try asPostgres("initdb", ["-D", "\(directory)/data", "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
        try asPostgres("pg_ctl", [
            "-D", "\(directory)/data", "-l", "\(directory)/server.log", "-w",
            "-o", "-k \(directory) -c listen_addresses=127.0.0.1 -p \(port) -c fsync=off", "start",
        ])
        try asPostgres("createdb", ["-h", directory, "-p", String(port), Self.database])
    }

    /// libpq's connection string for the test database, over TCP.
    var connection: String { "host=127.0.0.1 port=\(port) dbname=\(Self.database) user=postgres" }

    var psql: String { "\(bin)/psql" }

    func stop() {
        _ = try? asPostgres("pg_ctl", ["-D", "\(directory)/data", "-m", "immediate", "-w", "stop"])
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs a PostgreSQL tool as postgres, its output appended to `tools.log` in the directory.
    /// Spawned and waited for here: pg_ctl leaves a server running that would hold an output pipe.
    private func asPostgres(_ tool: String, _ arguments: [String]) throws {
        let log = "\(directory)/tools.log"
        let argv = [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups", "\(bin)/\(tool)"] + arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cArguments = argv.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, setpriv, &actions, nil, &cArguments, environ)
        guard spawned == 0 else { throw E2EError("cannot run \(tool): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else {
            throw E2EError("\(tool) \(arguments.joined(separator: " ")) failed (\(status)):\n\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
    }
}
