import Foundation
import PackagePlugin

/// Compiles the generic BPF program in `bpf/` with clang during `swift build` and embeds the
/// object in the target as a base64 string, so no compiled object is ever committed and the
/// `sonde` binary carries its BPF program with it.
@main
struct BPFObjectBuilder: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let bpfDirectory = context.package.directoryURL.appending(path: "bpf")
        let source = bpfDirectory.appending(path: "sonde.bpf.c")
        let header = bpfDirectory.appending(path: "sonde_abi.h")
        let workDirectory = context.pluginWorkDirectoryURL
        let object = workDirectory.appending(path: "sonde.bpf.o")
        let output = workDirectory.appending(path: "EmbeddedBPFObject.swift")
        // clang needs the multiarch include directory for <asm/types.h> (see DESIGN.md). clang 21
        // lowers unreachable code to a call of the `__bpf_trap` kfunc: an extern, for which libbpf
        // parses the kernel's whole BTF at every load (10 MB at the agent's memory peak, issue 7).
        // Older clangs neither emit it nor know the option that turns it off.
        let script = """
            set -e
            no_trap=""
            if clang -target bpf -mllvm -bpf-disable-trap-unreachable -x c -c /dev/null -o /dev/null 2>/dev/null; then
              no_trap="-mllvm -bpf-disable-trap-unreachable"
            fi
            clang -O2 -g -target bpf -Wall -Werror $no_trap -I/usr/include/x86_64-linux-gnu -I"$2" -c "$1" -o "$3"
            { printf '/// The generic BPF object compiled from bpf/sonde.bpf.c at build time.\\n'
              printf 'let embeddedBPFObjectBase64 = "'
              base64 -w0 "$3"
              printf '"\\n'
            } > "$4"
            """
        return [
            .buildCommand(
                displayName: "Compiling BPF program \(source.lastPathComponent)",
                executable: URL(filePath: "/bin/sh"),
                arguments: ["-c", script, "sh", source.path, bpfDirectory.path, object.path, output.path],
                inputFiles: [source, header],
                outputFiles: [output]
            ),
        ]
    }
}
