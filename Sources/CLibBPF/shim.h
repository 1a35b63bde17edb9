#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

/* BPF_TRACE_UPROBE_MULTI (Linux 6.6): one link sets uprobes at many offsets of one file, and
 * closing it waits for the kernel's grace period once instead of once per uprobe. Debian 12's
 * libbpf (1.1) and kernel headers (6.1) predate it, so the attach type and the link_create
 * attribute layout are spelled out here, as the kernel's own BTF describes them. */
#define SONDE_BPF_TRACE_UPROBE_MULTI 48

struct sonde_uprobe_multi_attr {
	__u32 prog_fd;
	__u32 target_fd;
	__u32 attach_type;
	__u32 flags;
	__u64 path;
	__u64 offsets;
	__u64 ref_ctr_offsets;
	__u64 cookies;
	__u32 count;
	__u32 uprobe_flags;
	__u32 pid;
};

/* BPF_F_UPROBE_MULTI_RETURN: the link's uprobes are return probes (uretprobes). */
#define SONDE_BPF_F_UPROBE_MULTI_RETURN 1

/* Attaches `program` at `count` file offsets of `path`, each with its cookie, for process `pid`
 * (0: every process), as return probes when `return_probes` is set. Returns the link's file
 * descriptor, or -errno. */
static inline int sonde_attach_uprobe_multi(int program_fd, const char *path, const unsigned long *offsets,
					    const __u64 *cookies, __u32 count, __u32 pid, bool return_probes)
{
	struct sonde_uprobe_multi_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.prog_fd = program_fd;
	attr.attach_type = SONDE_BPF_TRACE_UPROBE_MULTI;
	attr.path = (__u64)(unsigned long)path;
	attr.offsets = (__u64)(unsigned long)offsets;
	attr.cookies = (__u64)(unsigned long)cookies;
	attr.count = count;
	attr.pid = pid;
	attr.uprobe_flags = return_probes ? SONDE_BPF_F_UPROBE_MULTI_RETURN : 0;
	int fd = (int)syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr));
	return fd < 0 ? -errno : fd;
}
