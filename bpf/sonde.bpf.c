// SPDX-License-Identifier: GPL-2.0
/* Sonde's one generic uprobe program. Every probe site of every pack runs this
 * code; the BPF cookie of the site selects a probe configuration whose fetch
 * program says what to read. New packs never need a new BPF program. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"

char LICENSE[] SEC("license") = "GPL";

/* x86-64 user registers as a uprobe sees them: the uapi pt_regs layout, under
 * its name, by which the verifier knows a global function's context argument. */
struct pt_regs {
	__u64 r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8;
	__u64 rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SONDE_MAX_PROBE_CONFIGS);
	__type(key, __u32);
	__type(value, struct sonde_probe_config);
} probe_configs SEC(".maps");

/* Calls in flight; each record is built in place here, never in a per-CPU
 * buffer that a preempting task could overwrite, and reused in place by the
 * next call of its probe on its goroutine/thread (see SONDE_SPAN_CLAIMED). A
 * plain hash, not an LRU: an LRU evicts long before it is full (CPUs keep
 * batches of free nodes), and an evicted call would be lost without a count.
 * Nothing stays for ever: a call that unwinds without returning (panic,
 * Goexit) is found and counted at the next entry on its goroutine/thread, and
 * Engine reclaims, counted, the calls of processes that exited and calls past
 * a maximum age, and removes free records left idle. When full, new entries
 * are counted (SONDE_COUNTER_STATE_FULL) and not traced. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SONDE_MAX_CALLS);
	__type(key, struct sonde_call_key);
	__type(value, struct sonde_span_record);
} calls SEC(".maps");

/* Records in `calls` and entries in `active_contexts`, counted where the
 * programs insert and delete them: against struct sonde_limits, whether an
 * ended call's record, or an ended context's entry, stays. */
__s64 call_records = 0;
__s64 context_entries = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sonde_limits);
} limits SEC(".maps");

/* Spans that outlive their call (streams), under the object they belong to
 * until an END_OBJECT_SPAN probe sees it. A plain hash: an idle stream must
 * not be evicted silently; when full, new ones are counted and not kept. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SONDE_MAX_OBJECT_SPANS);
	__type(key, struct sonde_call_key);
	__type(value, struct sonde_span_record);
} object_spans SEC(".maps");

/* The span new spans on a goroutine/thread become children of. A plain hash
 * for the same reason as `calls`; Engine removes the contexts of exited
 * processes and those whose span has ended. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SONDE_MAX_CONTEXTS);
	__type(key, struct sonde_context_key);
	__type(value, struct sonde_trace_context);
} active_contexts SEC(".maps");

/* Client spans' trace contexts between the span's start, which names the
 * request's carrier (its header map), and the INJECT probe that writes the
 * request, often on another goroutine. The span's end removes its entry and
 * counts it when it was never written. A plain hash: nothing is evicted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SONDE_MAX_INJECTIONS);
	__type(key, struct sonde_call_key);
	__type(value, struct sonde_injection);
} injections SEC(".maps");

/* What a new call's record starts from before the entry fills it in; read
 * only. */
const struct sonde_span_record empty_record = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SONDE_COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);   /* Engine sets the size before loading */
} spans SEC(".maps");

/* Process starts and ends, a few a second on most machines: a record is 16
 * bytes with its header, so this holds 4,096 between two drains (user space
 * drains it on every turn of its loop, at least ten times a second). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} process_events SEC(".maps");

/* One block of user memory a START_SPAN probe reads in one go (e.g. the first
 * bytes of an *http.Request), so that its programs' reads inside it are
 * copies, not one bpf_probe_read_user each; and maybe a second one at a pointer
 * the first holds (the request's *url.URL). Per CPU, and owned by the thread
 * that filled it (see begin_fill): a reader that sees another owner reads user
 * memory instead. */
struct block_claim {
	__u64 owner;                 /* bpf_get_current_pid_tgid() of the filler; 0 while filling */
	__u64 fills;                 /* fills begun on this CPU */
	__u64 filling;               /* fills copying right now (a preempted one among them) */
};

struct sonde_prefetch {
	struct block_claim claim;
	__u64 base;                  /* user address of bytes[0] */
	__u64 length;
	__u64 object_base;           /* the second block: user address of object_bytes[0], */
	__u64 object_length;         /* 0 when there is none */
	__u8 bytes[SONDE_PREFETCH_SIZE + 16];
	__u8 object_bytes[SONDE_PREFETCH_SIZE + 16];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sonde_prefetch);
} prefetch SEC(".maps");

/* Emitted spans wake the reader when it lags by a quarter of the ring buffer
 * (512 KiB of the default 2 MiB), and then not again before as much more was
 * written; otherwise the reader drains on a timer. Not every record past it: a
 * reader draining as fast as spans come would be sent an interrupt per span.
 * Not less: each drain starts with cold caches, and draining more spans at a
 * time costs less per span (issue 7); the other three quarters leave the
 * reader time to be scheduled. */
#define WAKEUP_RING_FRACTION 4

/* The ring buffer's producer position before which no span wakes the reader
 * again. Racy between CPUs, harmlessly: at worst one wakeup more. */
__u64 next_wakeup_position = 0;

struct fetch_state {
	struct pt_regs *regs;
	struct sonde_probe_config *config;
	struct sonde_span_record *record;
	__u64 value;
	__u64 object;                /* set by SET_OBJECT: the span stays open under it */
	__u32 skipping;              /* a read failed: skip to the end of this capture */
	struct sonde_prefetch *block; /* this entry's prefetched block, or NULL */
	__u64 thread;                /* bpf_get_current_pid_tgid(), with a block: who may read it */
};

/* Fills of a per-CPU block (struct sonde_prefetch, struct search_block). A
 * thread may preempt a filling or reading one on its CPU and fill the block
 * itself, and be preempted in turn: bytes of both may then be mixed. So a fill
 * first takes the block from its owner, and ends owning it only when no other
 * fill began since it did and none is still copying (an earlier one, preempted
 * mid-copy, would go on writing); readers check the owner after copying. */
static __always_inline __u64 begin_fill(struct block_claim *claim)
{
	__u64 fill = __sync_fetch_and_add(&claim->fills, 1) + 1;
	claim->owner = 0;
	__sync_fetch_and_add(&claim->filling, 1);
	return fill;
}

/* Whether `thread` owns the block; read again from memory each time, as a
 * reader checks it before and after copying. */
static __always_inline int owned_by(struct block_claim *claim, __u64 thread)
{
	return *(volatile __u64 *)&claim->owner == thread;
}

/* After the fill's bytes and their address are written; `read`: whether the
 * copy succeeded. Whether the block is `thread`'s now. */
static __always_inline int end_fill(struct block_claim *claim, __u64 fill, __u64 thread, int read)
{
	__sync_fetch_and_add(&claim->filling, -1);
	if (!read)
		return 0;
	claim->owner = thread;
	if (*(volatile __u64 *)&claim->fills == fill && *(volatile __u64 *)&claim->filling == 0)
		return 1;
	claim->owner = 0;
	return 0;
}

/* The prefetched block of this probe's entry, or NULL. */
static __always_inline struct sonde_prefetch *prefetched_block(struct sonde_probe_config *config)
{
	__u32 zero = 0;
	return config->prefetch_length ? bpf_map_lookup_elem(&prefetch, &zero) : NULL;
}

/* Reads the second block (see struct sonde_prefetch), at the pointer the first
 * one holds, once the entry knows its span records captures: an unsampled
 * call, or one that found no room, never pays for it. */
static __always_inline void fill_object_prefetch(struct sonde_probe_config *config, struct sonde_prefetch *block,
						 __u64 thread)
{
	__u64 length = config->object_prefetch_length;
	__u64 pointer_offset = config->object_prefetch_offset;
	if (!block || !length || !owned_by(&block->claim, thread) || pointer_offset + 8 > block->length)
		return;
	if (length > SONDE_PREFETCH_SIZE)
		length = SONDE_PREFETCH_SIZE;
	__u64 object = *(__u64 *)(block->bytes + (pointer_offset & (SONDE_PREFETCH_SIZE - 1)));
	if (!object)
		return;
	/* A fill of its own: the first block stays this thread's only if no other
	 * fill came between. */
	__u64 fill = begin_fill(&block->claim);
	int read = bpf_probe_read_user(block->object_bytes, length, (void *)object) == 0;
	block->object_base = object;
	block->object_length = read ? length : 0;
	end_fill(&block->claim, fill, thread, 1);
}

/* Two words of user memory: a pointer, or a Go string's data and length. */
struct user_words {
	__u64 words[2];
};

/* Reads 8 or 16 bytes of user memory at `address` into `out`: from the
 * prefetched blocks when one holds them and `thread` (this one) still owns them,
 * otherwise from the process. Inlined, as are the ops that call it: on this
 * kernel every call and return costs a mitigation's return thunk. */
static __always_inline long read_user(struct sonde_prefetch *block, __u64 thread, struct user_words *out, __u32 size,
				      __u64 address)
{
	if (!block || !owned_by(&block->claim, thread))
		return bpf_probe_read_user(out, size, (void *)address);
	__u8 *bytes = NULL;
	__u64 offset = 0;
	if (address >= block->base && address - block->base + size <= block->length) {
		bytes = block->bytes;
		offset = address - block->base;
	} else if (address >= block->object_base && address - block->object_base + size <= block->object_length) {
		bytes = block->object_bytes;
		offset = address - block->object_base;
	}
	if (bytes) {
		offset &= SONDE_PREFETCH_SIZE - 1;
		out->words[0] = *(__u64 *)(bytes + offset);
		if (size == 16)
			out->words[1] = *(__u64 *)(bytes + offset + 8);
		if (owned_by(&block->claim, thread))
			return 0;
	}
	return bpf_probe_read_user(out, size, (void *)address);
}

static __always_inline void count_many(__u32 counter, __u64 amount)
{
	__u64 *slot = bpf_map_lookup_elem(&counters, &counter);
	if (slot)
		__sync_fetch_and_add(slot, amount);
}

static __always_inline void count(__u32 counter)
{
	count_many(counter, 1);
}

/* Whether a `calls` key names a call nested in another of its probe: such
 * records are inserted and deleted per call, not reused. */
static __always_inline int is_nested(const struct sonde_call_key *key)
{
	return key->span_slot >> SONDE_NESTING_SHIFT;
}

/* Inserts a fresh record of `calls`, span_id 0; whether there was room. */
static __always_inline int insert_call_record(struct sonde_call_key *key)
{
	if (bpf_map_update_elem(&calls, key, &empty_record, BPF_NOEXIST) != 0)
		return 0;
	__sync_fetch_and_add(&call_records, 1);
	return 1;
}

/* What Engine set in `limits` after loading the program; NULL before. */
static __always_inline struct sonde_limits *kept_entries_limits(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&limits, &zero);
}

/* Frees an entry of `calls` or `active_contexts` whose span id read `held`:
 * swaps it to 0 unless Engine claimed it, or another ended or took it, since
 * (see SONDE_SPAN_CLAIMED); whether this caller did. */
static __always_inline int free_entry(__u64 *span_id, __u64 held)
{
	return sonde_span_id_held(held) && __sync_val_compare_and_swap(span_id, held, 0) == held;
}

/* Deletes a record of `calls`; whether this caller did. */
static __always_inline int delete_call_record(struct sonde_call_key *key)
{
	if (bpf_map_delete_elem(&calls, key) != 0)
		return 0;
	__sync_fetch_and_add(&call_records, -1);
	return 1;
}

/* After a call's span was claimed: its record stays for the next call of its
 * probe on its goroutine/thread while `calls` has room to spare (see struct
 * sonde_limits); otherwise it goes. */
static __always_inline void keep_or_delete_call_record(struct sonde_call_key *key)
{
	struct sonde_limits *limit = kept_entries_limits();
	if (!is_nested(key) && limit && call_records > limit->kept_call_records)
		delete_call_record(key);
}

/* Ends the open call `span_id` (as read from the record before) owning the
 * record under `key` in `calls`: non-zero when this caller ended it, 0 when
 * Engine claimed it first. */
static __always_inline int release_call(struct sonde_call_key *key, struct sonde_span_record *record, __u64 span_id)
{
	if (is_nested(key))
		return delete_call_record(key);
	return free_entry(&record->span_id, span_id);
}

/* Trace and span ids: xorshift128+ per CPU, seeded from the kernel's
 * generator, in place of two helper calls per id (each call's return pays a
 * mitigation's thunk on this kernel). A task preempting another between the
 * state's load and store could draw the same number: the thread id mixed in
 * (a bijection of the output) keeps their ids apart. */
struct random_state {
	__u64 s0, s1;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct random_state);
} random_states SEC(".maps");

static __always_inline __u64 kernel_random64(void)
{
	return ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
}

static __always_inline __u64 random64(__u64 thread)
{
	__u32 zero = 0;
	struct random_state *state = bpf_map_lookup_elem(&random_states, &zero);
	if (!state)
		return kernel_random64();
	__u64 s1 = state->s0, s0 = state->s1;
	if (!(s0 | s1)) {
		s1 = kernel_random64();
		s0 = kernel_random64() | 1;
	}
	__u64 drawn = s0 + s1;
	state->s0 = s0;
	s1 ^= s1 << 23;
	state->s1 = s1 ^ s0 ^ (s1 >> 18) ^ (s0 >> 5);
	return drawn ^ (thread * 0x9e3779b97f4a7c15ULL);
}

/* A register's value, loaded in place: the verifier refuses a load through a
 * context pointer the compiler moved by a variable offset. */
#define CONTEXT_FIELD(regs, field) ({ __u64 loaded = (regs)->field; asm volatile("" : "+r"(loaded)); loaded; })

/* A register by DWARF number. */
static __always_inline __u64 register_value(struct pt_regs *regs, __u32 number)
{
	switch (number & 15) {
	case 0: return CONTEXT_FIELD(regs, rax);
	case 1: return CONTEXT_FIELD(regs, rdx);
	case 2: return CONTEXT_FIELD(regs, rcx);
	case 3: return CONTEXT_FIELD(regs, rbx);
	case 4: return CONTEXT_FIELD(regs, rsi);
	case 5: return CONTEXT_FIELD(regs, rdi);
	case 6: return CONTEXT_FIELD(regs, rbp);
	case 7: return CONTEXT_FIELD(regs, rsp);
	case 8: return CONTEXT_FIELD(regs, r8);
	case 9: return CONTEXT_FIELD(regs, r9);
	case 10: return CONTEXT_FIELD(regs, r10);
	case 11: return CONTEXT_FIELD(regs, r11);
	case 12: return CONTEXT_FIELD(regs, r12);
	case 13: return CONTEXT_FIELD(regs, r13);
	case 14: return CONTEXT_FIELD(regs, r14);
	default: return CONTEXT_FIELD(regs, r15);
	}
}

/* Where a memory op (DEREFERENCE, READ_GO_STRING, READ_INTEGER, READ_C_STRING)
 * reads, which becomes the working value: that value, or a register when
 * SONDE_OP_FROM_REGISTER is set, plus imm. One op instead of a load, an add
 * and the read: each op the loop runs is a call. */
static __always_inline __u64 op_address(struct pt_regs *regs, __u64 value, const struct sonde_op *op)
{
	if (op->reg & SONDE_OP_FROM_REGISTER)
		value = register_value(regs, op->reg);
	return value + op->imm;
}

/* Finding the trace-context headers among a request's: the names are the
 * literals of slots 0 (traceparent) and 1 (tracestate, when its length is not
 * 0), and one pass over the headers finds both. */
#define TRACE_HEADERS 2

/* The memory a header search walks, read a block at a time: a Go map's group
 * of 8 slots (control bytes and keys) or a run of header fields is one read,
 * not one per key (a browser's request has a dozen headers). Per CPU and owned
 * like struct sonde_prefetch: a search that finds another thread's owner after
 * copying reads user memory instead. */
#define SEARCH_BLOCK_SIZE 512

struct search_block {
	struct block_claim claim;
	__u64 base;                  /* user address of bytes[0] */
	__u64 length;
	__u8 bytes[SEARCH_BLOCK_SIZE + 16];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct search_block);
} search_blocks SEC(".maps");

struct header_search {
	struct sonde_probe_config *config;
	__u64 thread;                /* bpf_get_current_pid_tgid(): who may read the search block */
	__u64 found[TRACE_HEADERS];  /* the address of each header's value, or 0 */
	__u32 wanted;                /* how many of them are looked for */
};

/* The key of the map's one entry, in read-only data rather than on the stack of
 * functions at the end of the deepest chain of calls. */
const __u32 search_block_key = 0;

static __always_inline struct search_block *search_block(void)
{
	return bpf_map_lookup_elem(&search_blocks, &search_block_key);
}

/* Reads `length` bytes (at most SEARCH_BLOCK_SIZE) at `address` into this CPU's
 * search block for `thread`. Global functions, these two: the verifier checks
 * each once, not once for every state of the search loop that calls it. */
__noinline int fill_search_block(__u64 thread, __u64 address, __u64 length)
{
	struct search_block *block = search_block();
	if (!block)
		return 0;
	if (length > SEARCH_BLOCK_SIZE)
		length = SEARCH_BLOCK_SIZE;
	if (length == 0)
		return 0;
	__u64 fill = begin_fill(&block->claim);
	int read = bpf_probe_read_user(block->bytes, length, (void *)address) == 0;
	block->base = address;
	block->length = length;
	return end_fill(&block->claim, fill, thread, read);
}

/* Reads 8 or 16 bytes at `address` into `out`: from the search block while
 * `thread` still owns it and it holds them, otherwise from the process. */
__noinline int read_searched(__u64 thread, struct user_words *out, __u32 size, __u64 address)
{
	if (!out || (size != 8 && size != 16))
		return -1;
	struct search_block *block = search_block();
	if (block && owned_by(&block->claim, thread) && address >= block->base && address - block->base + size <= block->length) {
		__u64 offset = (address - block->base) & (SEARCH_BLOCK_SIZE - 1);
		out->words[0] = *(__u64 *)(block->bytes + offset);
		if (size == 16)
			out->words[1] = *(__u64 *)(block->bytes + offset + 8);
		if (owned_by(&block->claim, thread))
			return 0;
	}
	return bpf_probe_read_user(out, size, (void *)address);
}

/* Compares the Go string whose header `key` holds with the names looked for:
 * the literals are zero-padded to their 16-byte slots, and so is the copy,
 * made into `key` (one buffer on a stack near the verifier's bound). Returns
 * which one it is, or -1. */
static __always_inline int header_name(struct header_search *search, struct user_words *key)
{
	__u64 address = key->words[0], length = key->words[1];
	struct sonde_context_program *program = &search->config->context;
	__u32 lengths[TRACE_HEADERS] = { program->traceparent_length, search->wanted > 1 ? program->tracestate_length : 0 };
	int which = length == lengths[0] ? 0 : length == lengths[1] ? 1 : -1;
	if (which < 0 || length == 0 || length >= SONDE_LITERAL_SLOT_SIZE || search->found[which & 1])
		return -1;
	key->words[0] = 0;
	key->words[1] = 0;
	if (bpf_probe_read_user(key->words, length & (SONDE_LITERAL_SLOT_SIZE - 1), (void *)address) != 0)
		return -1;
	__u64 *literal = (__u64 *)&program->literals[(which & 1) * SONDE_LITERAL_SLOT_SIZE];
	return key->words[0] == literal[0] && key->words[1] == literal[1] ? which : -1;
}

/* Whether every header looked for was found. */
static __always_inline int all_found(struct header_search *search)
{
	return search->found[0] && (search->wanted < 2 || search->found[1]);
}

/* Searching a Go map[string][]string without its hash (the seed is the
 * process's): every full slot's key is compared, in at most MAX_MAP_GROUPS
 * buckets or groups of 8 slots, which lie in at most two arrays (Go <= 1.23:
 * the buckets and, while the map grows, the old ones; Go >= 1.24: one group,
 * or one table's groups). A request's header map has a few. One loop over
 * (group, slot) numbers, whose addresses follow from the loop's index: the
 * verifier walks one slot, not a loop in a loop. Go <= 1.23's overflow
 * buckets are read one deep (a bucket overflows once at the map's load
 * factor); a map past that (longer chains, several tables, more groups) is
 * searched in part, and a traceparent not found in it is counted. */
#define MAX_MAP_GROUPS 32
#define GO_MAP_SLOTS 8
#define GO_STRING_SIZE 16
#define GO_MAP_MIN_TOPHASH 5         /* Go <= 1.23: tophash below it marks an empty or moved slot */
#define GO_MAP_CTRL_EMPTY 0x80       /* Go >= 1.24: a control byte with it set is an empty slot */
#define GO_MAP_SAME_SIZE_GROW 8      /* hmap.flags: the old buckets are as many as the new */

struct map_search {
	struct header_search *headers;
	__u64 groups;                /* the first array of groups, */
	__u64 group_count;           /* how many it has, */
	__u64 more_groups;           /* the second, */
	__u64 more_count;            /* and how many it has */
	__u64 overflow_count;        /* Go <= 1.23: main buckets whose first overflow bucket is read */
	__u64 group_size;
	__u64 control;               /* the tophash or control bytes of the group being read */
	__u64 overflow;              /* the overflow bucket being read */
	__u32 deeper;                /* one of those has an overflow bucket of its own: not read */
	__u32 carrier;               /* SONDE_CARRIER_GO_MAP_BUCKETS or _SWISS */
	__u32 elem_size;
};

static long map_search_step(__u32 index, void *context)
{
	struct map_search *search = context;
	__u64 number = index / GO_MAP_SLOTS;
	__u32 slot = index % GO_MAP_SLOTS;
	__u64 arrays = search->group_count + search->more_count;
	if (number >= arrays + search->overflow_count)
		return 1;
	__u64 group;
	if (number < search->group_count) {
		group = search->groups + number * search->group_size;
	} else if (number < arrays) {
		group = search->more_groups + (number - search->group_count) * search->group_size;
	} else {
		/* the first overflow bucket of a main bucket: its last word points at it */
		__u64 link = search->groups + (number - arrays + 1) * search->group_size - 8;
		if (slot == 0 && bpf_probe_read_user(&search->overflow, sizeof(search->overflow), (void *)link) != 0)
			search->overflow = 0;
		group = search->overflow;
		if (!group)
			return 0;
		__u64 next = 0;
		if (slot == 0 && bpf_probe_read_user(&next, sizeof(next), (void *)(group + search->group_size - 8)) == 0 && next)
			search->deeper = 1;
	}
	/* The group's control word and keys: one read for its 8 slots. */
	__u64 thread = search->headers->thread;
	struct user_words words = {};
	if (slot == 0) {
		__u64 keys_length = search->carrier == SONDE_CARRIER_GO_MAP_BUCKETS
			? 8 + GO_MAP_SLOTS * GO_STRING_SIZE : search->group_size - search->elem_size;
		fill_search_block(thread, group, keys_length);
		if (read_searched(thread, &words, 8, group) != 0)
			words.words[0] = 0;   /* unreadable: no slot is full (nor empty for Go 1.24: keys are read and fail) */
		search->control = words.words[0];
	}
	__u8 control = search->control >> (slot * 8);
	__u64 key_address, elem_address;
	if (search->carrier == SONDE_CARRIER_GO_MAP_BUCKETS) {
		if (control < GO_MAP_MIN_TOPHASH)
			return 0;
		key_address = group + 8 + slot * GO_STRING_SIZE;
		elem_address = group + 8 + GO_MAP_SLOTS * GO_STRING_SIZE + slot * search->elem_size;
	} else {
		if (control & GO_MAP_CTRL_EMPTY)
			return 0;
		key_address = group + 8 + slot * (GO_STRING_SIZE + search->elem_size);
		elem_address = key_address + GO_STRING_SIZE;
	}
	if (read_searched(thread, &words, 16, key_address) != 0)
		return 0;
	int which = header_name(search->headers, &words);
	if (which < 0)
		return 0;
	/* the element, a []string: data, length; the first value counts */
	if (bpf_probe_read_user(words.words, sizeof(words.words), (void *)elem_address) != 0 || words.words[1] == 0)
		return 0;
	search->headers->found[which & 1] = words.words[0];
	return all_found(search->headers);
}

/* Finds the headers in the Go map `map`. */
static __always_inline void search_go_map(struct header_search *headers, __u32 carrier, __u32 elem_size, __u64 map)
{
	struct map_search search = { .headers = headers, .carrier = carrier, .elem_size = elem_size };
	__u64 header[4] = {};
	int partial = 0;
	if (!map || bpf_probe_read_user(header, sizeof(header), (void *)map) != 0 || header[0] == 0)
		return;
	if (carrier == SONDE_CARRIER_GO_MAP_BUCKETS) {
		/* hmap: count; flags, B, noverflow, hash0; buckets; oldbuckets */
		__u32 bucket_bits = (header[1] >> 8) & 0xff;
		search.group_size = 8 + GO_MAP_SLOTS * (GO_STRING_SIZE + elem_size) + 8;
		search.groups = header[2];
		search.group_count = bucket_bits < 8 ? 1ull << bucket_bits : 256;
		search.more_groups = header[3];
		if (header[3])
			search.more_count = (header[1] & GO_MAP_SAME_SIZE_GROW) || bucket_bits == 0
				? search.group_count : search.group_count >> 1;
		if ((header[1] >> 16) & 0xffff)   /* noverflow: some bucket has overflowed */
			search.overflow_count = search.group_count;
	} else {
		/* Map: used, seed, dirPtr, dirLen; with dirLen 0, dirPtr is the one group */
		search.group_size = 8 + GO_MAP_SLOTS * (GO_STRING_SIZE + elem_size);
		if (header[3] == 0) {
			search.groups = header[2];
			search.group_count = 1;
		} else {
			/* The first table: a map of fewer than ~900 entries has one. */
			__u64 table = 0, groups[2] = {};   /* table.groups: data, lengthMask */
			if (bpf_probe_read_user(&table, sizeof(table), (void *)header[2]) != 0
			    || bpf_probe_read_user(groups, sizeof(groups), (void *)(table + 16)) != 0)
				return;
			search.groups = groups[0];
			search.group_count = groups[1] + 1;
			partial = header[3] > 1;
		}
	}
	if (search.group_count + search.more_count + search.overflow_count > MAX_MAP_GROUPS)
		partial = 1;
	bpf_loop(MAX_MAP_GROUPS * GO_MAP_SLOTS, map_search_step, &search, 0);
	/* Only a traceparent not found can have been missed. */
	if ((partial || search.deeper) && !headers->found[0])
		count(SONDE_COUNTER_MAP_TOO_LARGE);
}

/* Searching a Go slice of header fields ({Name, Value string, ...}) by name. */
#define MAX_HEADER_FIELDS 64

struct field_search {
	struct header_search *headers;
	__u64 data;
	__u64 count;
	__u64 stride;
	__u64 block_end;             /* the first field the search block does not hold */
};

static long field_search_step(__u32 index, void *context)
{
	struct field_search *search = context;
	if (index >= search->count)
		return 1;
	__u64 field = search->data + index * search->stride;
	/* A run of fields: one read for as many as the search block holds. */
	__u64 thread = search->headers->thread;
	if (index == search->block_end) {
		fill_search_block(thread, field, (search->count - index) * search->stride);
		search->block_end = index + SEARCH_BLOCK_SIZE / search->stride;
	}
	struct user_words name = {};
	if (read_searched(thread, &name, 16, field) != 0)
		return 1;
	int which = header_name(search->headers, &name);
	if (which < 0)
		return 0;
	search->headers->found[which & 1] = field + GO_STRING_SIZE;
	return all_found(search->headers);
}

/* Finds the headers in the Go slice whose header is at `slice`. */
static __always_inline void search_field_slice(struct header_search *headers, __u32 stride, __u64 slice)
{
	__u64 header[2] = {};   /* data, length */
	if (!slice || stride < 2 * GO_STRING_SIZE || bpf_probe_read_user(header, sizeof(header), (void *)slice) != 0)
		return;
	struct field_search search = { .headers = headers, .data = header[0], .count = header[1], .stride = stride };
	if (search.count > MAX_HEADER_FIELDS) {
		count(SONDE_COUNTER_MAP_TOO_LARGE);
		search.count = MAX_HEADER_FIELDS;
	}
	bpf_loop(MAX_HEADER_FIELDS, field_search_step, &search, 0);
}

/* The addresses of the trace-context headers' values (Go strings), or 0. */
struct trace_headers {
	__u64 traceparent;
	__u64 tracestate;
};

/* Finds the trace-context headers among `headers`, stored as the probe's
 * program says, for `thread` (the caller's bpf_get_current_pid_tgid()). A
 * global function, checked once by the verifier. */
__noinline int find_trace_headers(struct sonde_probe_config *config, __u64 headers, __u64 thread, struct trace_headers *found)
{
	if (!config || !found)
		return 0;
	struct sonde_context_program *program = &config->context;
	struct header_search search = {
		.config = config, .thread = thread, .wanted = program->tracestate_length ? 2 : 1,
	};
	if (program->carrier == SONDE_CARRIER_FIELD_SLICE)
		search_field_slice(&search, program->element_size, headers);
	else
		search_go_map(&search, program->carrier, program->element_size, headers);
	found->traceparent = search.found[0];
	found->tracestate = search.found[1];
	return 0;
}

static __always_inline __u8 *data_at(struct sonde_span_record *record, __u16 out)
{
	return record->data + (out & (SONDE_DATA_SIZE - 1));
}

/* Capture op->capture is in place: `size` bytes at op->out. */
static __always_inline void mark_captured(struct sonde_span_record *record, struct sonde_op *op, __u32 size)
{
	record->captured |= 1u << (op->capture & 31);
	__u32 end = (op->out & (SONDE_DATA_SIZE - 1)) + size;
	if (end > record->data_length)
		record->data_length = end;
}

static __always_inline void copy_string(struct fetch_state *state, struct sonde_op *op, __u64 address, __u64 length)
{
	__u8 *destination = data_at(state->record, op->out);
	__u64 limit = op->len;
	__u16 truncated = 0;
	if (length > limit) {
		length = limit;
		truncated = SONDE_STRING_TRUNCATED;
	}
	length &= SONDE_MAX_STRING;
	if (length > 0 && bpf_probe_read_user(destination + 2, length, (void *)address) != 0) {
		state->record->failed_reads += 1;
		return;
	}
	*(__u16 *)destination = length | truncated;
	mark_captured(state->record, op, 2 + length);
}

/* A NUL-terminated string at `address` (C's char *): at most op->len bytes are
 * kept, and a longer string is marked cut. The slot has a byte more than the
 * kept bytes, for the NUL the kernel writes after them. */
static __always_inline void copy_c_string(struct fetch_state *state, struct sonde_op *op, __u64 address)
{
	__u8 *destination = data_at(state->record, op->out);
	__u32 limit = op->len & SONDE_MAX_STRING;
	long copied = bpf_probe_read_user_str(destination + 2, limit + 1, (void *)address);
	if (copied <= 0) {
		state->record->failed_reads += 1;
		return;
	}
	__u16 length = (__u16)(copied - 1);
	__u8 next = 0;
	if (length == limit && bpf_probe_read_user(&next, 1, (void *)(address + limit)) == 0 && next != 0)
		length |= SONDE_STRING_TRUNCATED;
	*(__u16 *)destination = length;
	mark_captured(state->record, op, 2 + (length & SONDE_MAX_STRING));
}

/* FIND_IN_LIST: walks at most SONDE_MAX_LIST_NODES nodes from the working
 * value; leaves the node whose key matches as the working value. Returns 1
 * when none does (the list ended or was too long: the capture is absent). */
static __always_inline int find_in_list(struct fetch_state *state, struct sonde_op *op)
{
	__u32 key_size = op->reg;
	if (key_size > 8)
		key_size = 8;
	if (key_size == 0)
		key_size = 1;
	__u64 wanted = (__u64)op->imm;
	if (key_size < 8)
		wanted &= (1ULL << (key_size * 8)) - 1;
	__u64 node = state->value;
	for (int visited = 0; visited < SONDE_MAX_LIST_NODES && node != 0; visited++) {
		__u64 key = 0;
		if (bpf_probe_read_user(&key, key_size, (void *)(node + op->len)) != 0
		    || (key != wanted && bpf_probe_read_user(&node, 8, (void *)(node + op->out)) != 0)) {
			state->record->failed_reads += 1;
			return 1;
		}
		if (key == wanted) {
			state->value = node;
			return 0;
		}
	}
	return 1;
}

static long run_op(__u32 index, void *context)
{
	struct fetch_state *state = context;
	if (index >= SONDE_MAX_OPS)
		return 1;
	struct sonde_op *op = &state->config->ops[index];
	struct sonde_span_record *record = state->record;
	struct user_words read = {};

	if (state->skipping) {
		/* A capture ends with the op that stores it; the next one starts afresh. */
		if ((op->code >= SONDE_OP_READ_GO_STRING && op->code <= SONDE_OP_READ_STRING_REGISTERS)
		    || op->code == SONDE_OP_READ_C_STRING)
			state->skipping = 0;
		return 0;
	}

	if (op->code == SONDE_OP_DEREFERENCE || op->code == SONDE_OP_READ_GO_STRING || op->code == SONDE_OP_READ_INTEGER
	    || op->code == SONDE_OP_READ_C_STRING)
		state->value = op_address(state->regs, state->value, op);
	switch (op->code) {
	case SONDE_OP_LOAD_REGISTER:
		state->value = register_value(state->regs, op->reg) + op->imm;
		break;
	case SONDE_OP_LOAD_SAVED:
		state->value = record->saved[op->reg & (SONDE_SAVED_SLOTS - 1)];
		break;
	case SONDE_OP_SAVE:
		record->saved[op->reg & (SONDE_SAVED_SLOTS - 1)] = state->value;
		break;
	case SONDE_OP_ADD:
		state->value += op->imm;
		break;
	case SONDE_OP_DEREFERENCE:
		if (read_user(state->block, state->thread, &read, 8, state->value) != 0) {
			record->failed_reads += 1;
			state->skipping = 1;   /* this capture is absent; later ones still run */
			break;
		}
		state->value = read.words[0];
		break;
	case SONDE_OP_EXPECT_ADDRESS:
		if (state->value != (__u64)op->imm + record->load_bias) {
			record->stopped = 1;
			return 1;
		}
		break;
	case SONDE_OP_READ_GO_STRING:
		if (read_user(state->block, state->thread, &read, 16, state->value) != 0) {
			record->failed_reads += 1;
			break;
		}
		copy_string(state, op, read.words[0], read.words[1]);
		break;
	case SONDE_OP_READ_STRING_REGISTERS:
		copy_string(state, op, register_value(state->regs, op->reg), register_value(state->regs, op->imm));
		break;
	case SONDE_OP_READ_C_STRING:
		copy_c_string(state, op, state->value);
		break;
	case SONDE_OP_FIND_IN_LIST:
		state->skipping = find_in_list(state, op);
		break;

	case SONDE_OP_READ_INTEGER: {
		__u32 size = op->len;
		if (size > 8)
			size = 8;
		if (size == 0)
			size = 1;
		if ((size == 8 ? read_user(state->block, state->thread, &read, 8, state->value)
			       : bpf_probe_read_user(&read.words[0], size, (void *)state->value)) != 0) {
			record->failed_reads += 1;
			break;
		}
		*(__u64 *)data_at(record, op->out) = read.words[0];
		mark_captured(record, op, 8);
		break;
	}
	case SONDE_OP_STORE_VALUE:
		*(__u64 *)data_at(record, op->out) = state->value;
		mark_captured(record, op, 8);
		break;
	case SONDE_OP_SET_OBJECT:
		state->object = state->value;
		break;
	default:
		return 1;
	}
	return 0;
}

static __always_inline void run_fetch_program(struct fetch_state *state)
{
	__u32 count_ops = state->config->op_count;
	if (count_ops > SONDE_MAX_OPS)
		count_ops = SONDE_MAX_OPS;
	if (count_ops > 0)
		bpf_loop(count_ops, run_op, state, 0);
}

static __always_inline __u64 call_owner(struct sonde_probe_config *config, struct pt_regs *regs)
{
	if (config->key_mode == SONDE_KEY_GOROUTINE)
		return regs->r14;
	return (__u32)bpf_get_current_pid_tgid();
}

/* Whether an entry of `active_contexts` (or NULL) holds a trace context: the
 * entry outlives it, for the next one (see SONDE_SPAN_CLAIMED). */
static __always_inline int holds_context(const struct sonde_trace_context *entry)
{
	return entry && sonde_span_id_held(entry->span_id);
}

/* The trace context active on a goroutine/thread, or NULL. */
static __always_inline struct sonde_trace_context *active_context(struct sonde_context_key *key)
{
	struct sonde_trace_context *entry = bpf_map_lookup_elem(&active_contexts, key);
	return holds_context(entry) ? entry : NULL;
}

/* Makes `context` the active one on a goroutine/thread, whose entry (NULL:
 * none yet) is `entry`: written over it, taken by swapping the span_id as
 * Engine claims one it removes, or a new entry; counted when the map is full
 * or Engine is removing the entry. */
static __always_inline void set_context_in(struct sonde_trace_context *entry, struct sonde_context_key *key,
					   struct sonde_trace_context *context)
{
	if (!entry) {
		if (bpf_map_update_elem(&active_contexts, key, context, BPF_NOEXIST) != 0)
			count(SONDE_COUNTER_CONTEXTS_FULL);
		else
			__sync_fetch_and_add(&context_entries, 1);
		return;
	}
	__u64 current = entry->span_id;
	if (current == SONDE_SPAN_CLAIMED || __sync_val_compare_and_swap(&entry->span_id, current, context->span_id) != current) {
		count(SONDE_COUNTER_CONTEXTS_FULL);
		return;
	}
	entry->trace_id_high = context->trace_id_high;
	entry->trace_id_low = context->trace_id_low;
	entry->owner = context->owner;
	entry->span_slot = context->span_slot;
	entry->flags = context->flags;
	entry->stack_depth = context->stack_depth;
	entry->trace_state_data = context->trace_state_data;
	entry->trace_state_length = context->trace_state_length;
}

static __always_inline void set_context(struct sonde_context_key *key, struct sonde_trace_context *context)
{
	set_context_in(bpf_map_lookup_elem(&active_contexts, key), key, context);
}

/* Deletes the entry of `active_contexts` under `key`. */
static __always_inline void delete_context_entry(struct sonde_context_key *key)
{
	if (bpf_map_delete_elem(&active_contexts, key) == 0)
		__sync_fetch_and_add(&context_entries, -1);
}

/* Leaves no trace context active in `entry` (NULL: none), the entry of
 * `key`: it stays for the next one while the map has room to spare (see
 * struct sonde_limits), and goes otherwise. */
static __always_inline void clear_context_in(struct sonde_trace_context *entry, struct sonde_context_key *key)
{
	if (!entry)
		return;
	if (!free_entry(&entry->span_id, entry->span_id))
		return;
	struct sonde_limits *limit = kept_entries_limits();
	if (limit && context_entries > limit->kept_context_entries)
		delete_context_entry(key);
}

static __always_inline void clear_context(struct sonde_context_key *key)
{
	clear_context_in(bpf_map_lookup_elem(&active_contexts, key), key);
}

/* How deep the stack is at this site: bytes below the top of the goroutine's
 * stack for Go (the runtime moves a growing stack, keeping these distances),
 * the inverted stack pointer for a native thread. Deeper is larger; 0 when
 * unknown, which disables the checks that compare depths. */
static __always_inline __u64 stack_depth(struct sonde_probe_config *config, struct pt_regs *regs)
{
	if (config->key_mode == SONDE_KEY_GOROUTINE) {
		__u64 sp = config->at_return == SONDE_IN_GO_FRAME ? regs->rbp + 8 : regs->rsp;
		__u64 stack_hi = 0;
		if (bpf_probe_read_user(&stack_hi, sizeof(stack_hi), (void *)(regs->r14 + SONDE_GO_G_STACK_HI_OFFSET)) != 0
		    || stack_hi < sp)
			return 0;
		return stack_hi - sp;
	}
	/* After a return probe the return address is popped: the entry's depth is 8 bytes deeper. */
	if (config->at_return == SONDE_AFTER_RETURN)
		return ~(regs->rsp - 8);
	return ~regs->rsp;
}

/* Whether an open call at `then` is still on the stack at depth `now`: a
 * call's frame is above every entry made while it runs. */
static __always_inline int unwound(__u64 then, __u64 now)
{
	return then && now && now <= then;
}

enum context_liveness {
	CONTEXT_GONE = 0,            /* no open span: start a new trace */
	CONTEXT_OPEN = 1,            /* the span is open: become its child */
	CONTEXT_UNWOUND = 2,         /* its call unwound; `context` now names that call's parent */
};

/* Whether the span a context names is still open, from an entry on `owner`
 * at `depth`: its call is in `calls` and, when it ran on this same
 * goroutine/thread, deeper entries than it are still inside it. A call that
 * unwound without returning (panic, Goexit, an exception) is removed and
 * counted here, so nothing becomes its child; its own parent may still be
 * open, and `context` is set to name it. */
static __always_inline int context_liveness(struct sonde_trace_context *context, __u32 tgid, __u64 owner, __u64 depth)
{
	struct sonde_call_key key = { .key = context->owner, .tgid = tgid, .span_slot = context->span_slot };
	struct sonde_span_record *call = bpf_map_lookup_elem(&calls, &key);
	if (!call || call->span_id != context->span_id)
		return CONTEXT_GONE;
	if (context->owner != owner || !unwound(call->stack_depth, depth))
		return CONTEXT_OPEN;
	__u64 parent_span = call->parent_span_id;
	__u64 parent_owner = call->parent_owner;
	__u32 parent_slot = call->parent_slot;
	if (release_call(&key, call, context->span_id))
		count(SONDE_COUNTER_CALL_UNWOUND);
	context->span_id = parent_span;
	context->owner = parent_owner;
	context->span_slot = parent_slot;
	return parent_span ? CONTEXT_UNWOUND : CONTEXT_GONE;
}

/* Whether a marker (an unsampled root's, or a remote parent's) still holds,
 * from an entry on `owner` at `depth`: on its own goroutine/thread until an
 * entry as shallow as the call that set it (it unwound, or the next request
 * began); elsewhere (a goroutine it started) while the marker's goroutine
 * still has this very marker. */
static __always_inline int marker_open(struct sonde_trace_context *marker, __u32 tgid, __u64 owner, __u64 depth)
{
	if (marker->owner == owner)
		return !unwound(marker->stack_depth, depth);
	struct sonde_context_key root_key = { .key = marker->owner, .tgid = tgid };
	struct sonde_trace_context *root = active_context(&root_key);
	return root && root->flags == marker->flags && root->span_id == marker->span_id;
}

/* How many unwound calls one entry looks past for a span still open. */
#define MAX_UNWOUND_ANCESTORS 4

enum parent_kind {
	PARENT_NONE = 0,             /* a root: the sampler decides */
	PARENT_OPEN = 1,             /* a child of the open span in `parent` */
	PARENT_UNSAMPLED = 2,        /* inside a trace the sampler did not record */
	PARENT_REMOTE = 3,           /* a child of another process's span (a traceparent) */
	PARENT_REMOTE_UNSAMPLED = 4, /* inside a trace that process did not sample */
};

/* The open span an entry on `owner` at `depth` descends from, found from the
 * context in `entry`, the goroutine/thread's entry of `active_contexts`, by
 * skipping calls that unwound. */
static __always_inline int find_parent(struct sonde_trace_context *entry, struct sonde_context_key *context_key, __u64 owner,
				       __u64 depth, struct sonde_trace_context *parent)
{
	if (!holds_context(entry))
		return PARENT_NONE;
	*parent = *entry;   /* a copy: Engine may claim the entry while this runs */
	if (parent->flags & SONDE_CONTEXT_UNSAMPLED)
		return marker_open(parent, context_key->tgid, owner, depth) ? PARENT_UNSAMPLED : PARENT_NONE;
	if (parent->flags & SONDE_CONTEXT_REMOTE)
		return parent->owner == owner && !unwound(parent->stack_depth, depth) ? PARENT_REMOTE : PARENT_NONE;
	for (int level = 0; level < MAX_UNWOUND_ANCESTORS; level++) {
		int liveness = context_liveness(parent, context_key->tgid, owner, depth);
		if (liveness != CONTEXT_UNWOUND)
			return liveness == CONTEXT_OPEN ? PARENT_OPEN : PARENT_NONE;
	}
	return PARENT_NONE;
}

/* A root span is recorded when its service's sampler keeps its trace id. */
static __always_inline int sampled(const struct sonde_probe_config *config, __u64 trace_id_low)
{
	return (trace_id_low >> 1) < config->sampling_threshold;
}

/* What a trace-context program found or is to write. */
struct context_state {
	struct pt_regs *regs;
	struct sonde_probe_config *config;
	__u64 value;
	__u64 load_bias;
	__u32 stopped;                       /* an op failed: no headers */
	__u32 remote;                        /* EXTRACT found a valid traceparent: */
	__u64 remote_trace_id_high;
	__u64 remote_trace_id_low;
	__u64 remote_span_id;
	__u64 remote_flags;
	__u64 trace_state_data;              /* and this tracestate (a Go string's bytes), or 0 */
	__u64 trace_state_length;
	__u64 carrier;                       /* EXTRACT with sets_carrier: the headers */
	struct sonde_prefetch *block;        /* START_SPAN: the prefetched block, or NULL */
	__u64 thread;                        /* bpf_get_current_pid_tgid() */
};

/* One more than each lowercase hex digit's value; 0 for every other byte (W3C
 * trace context allows lowercase hex only). A table, not branches: the
 * verifier would walk each branch of each of the 55 characters. */
const __u8 hex_values_plus_one[256] = {
	['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10,
	['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* `count` (at most 16) hex digits of `text` from `start`; `invalid` gains a
 * bit for any that is not one. */
static __always_inline __u64 parse_hex(const __u8 *text, __u32 start, __u32 count, __u32 *invalid)
{
	__u64 value = 0;
	for (__u32 i = 0; i < count; i++) {
		__u8 digit = hex_values_plus_one[text[(start + i) & 63]] - 1;   /* 0xff when not a digit */
		*invalid |= digit & 0x10;
		value = (value << 4) | (digit & 15);
	}
	return value;
}

/* A W3C traceparent in the Go string at `address`: "vv-trace id-span id-ff".
 * Version 00 is exactly 55 characters; a later version may append fields
 * after a '-', version ff is invalid; zero ids are invalid. */
static __always_inline int parse_traceparent(struct context_state *state, __u64 address)
{
	__u64 string[2] = {};
	__u8 text[64] = {};
	if (bpf_probe_read_user(string, sizeof(string), (void *)address) != 0 || string[1] < SONDE_TRACEPARENT_LENGTH)
		return 0;
	__u32 length = string[1] > SONDE_TRACEPARENT_LENGTH ? SONDE_TRACEPARENT_LENGTH + 1 : SONDE_TRACEPARENT_LENGTH;
	if (bpf_probe_read_user(text, length, (void *)string[0]) != 0)
		return 0;
	__u32 invalid = 0;
	__u64 version = parse_hex(text, 0, 2, &invalid);
	__u64 trace_id_high = parse_hex(text, 3, 16, &invalid);
	__u64 trace_id_low = parse_hex(text, 19, 16, &invalid);
	__u64 span_id = parse_hex(text, 36, 16, &invalid);
	__u64 flags = parse_hex(text, 53, 2, &invalid);
	if (invalid || text[2] != '-' || text[35] != '-' || text[52] != '-' || version == 0xff
	    || (length > SONDE_TRACEPARENT_LENGTH && (version == 0 || text[SONDE_TRACEPARENT_LENGTH] != '-'))
	    || (trace_id_high == 0 && trace_id_low == 0) || span_id == 0)
		return 0;
	state->remote_trace_id_high = trace_id_high;
	state->remote_trace_id_low = trace_id_low;
	state->remote_span_id = span_id;
	state->remote_flags = flags;
	state->remote = 1;
	return 1;
}

/* The probe that writes a request: the trace context of the client span
 * waiting under the carrier in `object_register`, which its trace-context
 * program writes; NULL when no client span sends this request (another
 * request, or propagation is off). */
static __always_inline struct sonde_injection *waiting_injection(struct sonde_probe_config *config, struct pt_regs *regs)
{
	struct sonde_call_key key = {
		.key = register_value(regs, config->object_register),
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.span_slot = config->span_slot,
	};
	return bpf_map_lookup_elem(&injections, &key);
}

/* Appends "Name: 00-trace id-span id-flags\r\n" to the buffered writer at
 * `writer` when it fits: its []byte and the count of bytes it holds where the
 * program says. Writes nothing otherwise, and counts it. */
/* A global function, referenced by the writing program alone: its buffers are
 * not on that program's stack frame (see extract_trace_context). */
__noinline int write_header_line(struct pt_regs *regs, struct sonde_probe_config *config, __u64 writer)
{
	if (!config)
		return 0;
	struct sonde_context_program *program = &config->context;
	struct sonde_injection *injection = waiting_injection(config, regs);
	__u64 buffer[2] = {};   /* data, length */
	__s64 used = 0;
	__u32 name_length = program->traceparent_length;
	if (!injection || name_length == 0 || name_length >= SONDE_LITERAL_SLOT_SIZE
	    || bpf_probe_read_user(buffer, sizeof(buffer), (void *)(writer + program->buffer_offset)) != 0
	    || bpf_probe_read_user(&used, sizeof(used), (void *)(writer + program->used_offset)) != 0)
		return 0;
	__u32 line_length = name_length + 2 + SONDE_TRACEPARENT_LENGTH + 2;
	if (used < 0 || (__u64)used > buffer[1] || buffer[1] - used < line_length) {
		count(SONDE_COUNTER_INJECT_NO_ROOM);
		return 0;
	}
	__u8 line[128] = {};
	for (__u32 i = 0; i < SONDE_LITERAL_SLOT_SIZE - 1; i++) {
		if (i >= name_length)
			break;
		line[i] = program->literals[i];
	}
	__u8 *value = &line[name_length & (SONDE_LITERAL_SLOT_SIZE - 1)];
	const char digits[] = "0123456789abcdef";
	__u64 words[3] = { injection->trace_id_high, injection->trace_id_low, injection->span_id };
	value[0] = ':';
	value[1] = ' ';
	value[2] = '0';
	value[3] = '0';
	value[4] = '-';
	for (__u32 word = 0; word < 3; word++) {
		/* trace id at 5..36 (two words), '-', span id at 38..53 */
		__u32 at = word < 2 ? 5 + word * 16 : 38;
		for (__u32 nibble = 0; nibble < 16; nibble++)
			value[(at + nibble) & 63] = digits[(words[word] >> (60 - nibble * 4)) & 15];
	}
	value[37] = '-';
	value[54] = '-';
	value[55] = digits[(injection->flags >> 4) & 15];
	value[56] = digits[injection->flags & 15];
	value[57] = '\r';
	value[58] = '\n';
	if (bpf_probe_write_user((void *)(buffer[0] + used), line, line_length & 127) != 0)
		return 0;
	__s64 now_used = used + line_length;
	bpf_probe_write_user((void *)(writer + program->used_offset), &now_used, sizeof(now_used));
	__sync_fetch_and_add(&injection->written, 1);
	return 1;
}

/* One op of a trace-context program's way to the headers; returns 1 to stop. */
static long context_path_step(__u32 index, void *context)
{
	struct context_state *state = context;
	if (index >= SONDE_MAX_CONTEXT_OPS)
		return 1;
	struct sonde_op *op = &state->config->context.ops[index];
	struct user_words read = {};
	switch (op->code) {
	case SONDE_OP_LOAD_REGISTER:
		state->value = register_value(state->regs, op->reg) + op->imm;
		return 0;
	case SONDE_OP_ADD:
		state->value += op->imm;
		return 0;
	case SONDE_OP_DEREFERENCE:
		state->value = op_address(state->regs, state->value, op);
		if (read_user(state->block, state->thread, &read, 8, state->value) == 0) {
			state->value = read.words[0];
			return 0;
		}
		break;
	case SONDE_OP_EXPECT_ADDRESS:
		if (state->value == (__u64)op->imm + state->load_bias)
			return 0;
		break;
	}
	state->stopped = 1;
	return 1;
}

/* EXTRACT: the traceparent the headers carry, when valid, and its tracestate. */
/* A global function: its buffers are not on the stack frame of the program
 * that calls it, below which on_entry runs (the verifier bounds a chain of
 * calls to 512 bytes of stack in all). */
__noinline int extract_trace_context(struct sonde_probe_config *config, struct context_state *state, __u64 headers)
{
	if (!config || !state)
		return 0;
	struct sonde_context_program *program = &config->context;
	if (program->sets_carrier)
		state->carrier = headers;
	struct trace_headers found = {};
	find_trace_headers(config, headers, state->thread, &found);
	if (!found.traceparent)
		return 0;
	if (!parse_traceparent(state, found.traceparent)) {
		count(SONDE_COUNTER_BAD_TRACEPARENT);
		return 0;
	}
	__u64 trace_state[2] = {};   /* data, length */
	if (found.tracestate && bpf_probe_read_user(trace_state, sizeof(trace_state), (void *)found.tracestate) == 0) {
		state->trace_state_data = trace_state[0];
		state->trace_state_length = trace_state[1];
	}
	return 0;
}

/* Runs the probe's trace-context program: its ops reach the headers, its
 * action reads or writes them. */
static __always_inline void run_context_program(struct context_state *state, const int may_write)
{
	struct sonde_context_program *program = &state->config->context;
	__u32 count_ops = program->op_count;
	if (count_ops == 0 || count_ops > SONDE_MAX_CONTEXT_OPS)
		return;
	bpf_loop(count_ops, context_path_step, state, 0);
	if (state->stopped)
		return;
	if (program->action == SONDE_CONTEXT_EXTRACT)
		extract_trace_context(state->config, state, state->value);
	else if (may_write && program->action == SONDE_CONTEXT_INJECT)
		write_header_line(state->regs, state->config, state->value);
}

/* The new client span's context waits under its carrier (the request's
 * header map) for the probe that writes the request. */
static __always_inline void await_injection(struct sonde_span_record *record, __u64 carrier)
{
	struct sonde_call_key key = { .key = carrier, .tgid = record->tgid, .span_slot = record->span_slot };
	struct sonde_injection waiting = {
		.trace_id_high = record->trace_id_high,
		.trace_id_low = record->trace_id_low,
		.span_id = record->span_id,
		.flags = 1,
	};
	if (bpf_map_update_elem(&injections, &key, &waiting, BPF_ANY) != 0) {
		count(SONDE_COUNTER_INJECTIONS_FULL);
		return;
	}
	record->carrier = carrier;
}

/* At the client span's end: its context stops waiting; counted when it was
 * never written. */
static __always_inline void finish_injection(struct sonde_span_record *record)
{
	struct sonde_call_key key = { .key = record->carrier, .tgid = record->tgid, .span_slot = record->span_slot };
	struct sonde_injection *waiting = bpf_map_lookup_elem(&injections, &key);
	if (!waiting)
		return;
	if (waiting->written == 0)
		count(SONDE_COUNTER_NOT_INJECTED);
	bpf_map_delete_elem(&injections, &key);
}

/* The `calls` key of the call at nesting `level` inside the outermost call
 * whose key is `base` (level 0). */
static __always_inline struct sonde_call_key nested_key(struct sonde_call_key *base, __u32 level)
{
	struct sonde_call_key key = { .key = base->key, .tgid = base->tgid, .span_slot = base->span_slot | level << SONDE_NESTING_SHIFT };
	return key;
}

/* Removes the calls at levels 1...`nested` of probe `base` on its goroutine/thread,
 * which unwound with their outermost call; how many were still recorded. */
static __always_inline __u32 drop_nested_calls(struct sonde_call_key *base, __u32 nested)
{
	__u32 dropped = 0;
	for (__u32 level = 1; level <= nested && level <= SONDE_MAX_NESTED_CALLS; level++) {
		struct sonde_call_key key = nested_key(base, level);
		if (delete_call_record(&key))
			dropped++;
	}
	return dropped;
}

/* An entry whose probe already has a call open on this goroutine/thread
 * (`base`, level 0). A recorded call as deep as this entry or deeper unwound
 * without returning (panic, Goexit, an exception): it is ended and counted,
 * and so is every call nested in it, and its record is the entry's. Otherwise
 * the entry nests in the innermost call still open, at the next level, whose
 * key `base` becomes: a fresh record. Either way the record's span_id is 0,
 * for the entry to take. Beyond SONDE_MAX_NESTED_CALLS it is counted and not
 * recorded (non-zero result); so is an entry that finds the map full. */
/* A global function: the verifier checks its loop once. */
__noinline int nest_call(struct sonde_call_key *base, __u64 depth)
{
	if (!base)
		return -1;
	struct sonde_call_key outer_key = *base;
	struct sonde_span_record *outer = bpf_map_lookup_elem(&calls, &outer_key);
	if (!outer) {
		count(SONDE_COUNTER_STATE_FULL);
		return -1;
	}
	__u32 nested = outer->nested_calls;
	if (nested > SONDE_MAX_NESTED_CALLS)
		nested = SONDE_MAX_NESTED_CALLS;
	if (unwound(outer->stack_depth, depth)) {
		if (!release_call(&outer_key, outer, outer->span_id)) {
			count(SONDE_COUNTER_STATE_FULL);   /* Engine took it at this moment */
			return -1;
		}
		count_many(SONDE_COUNTER_CALL_UNWOUND, 1 + drop_nested_calls(&outer_key, nested));
		return 0;
	}
	/* The innermost calls first: those this entry is not inside unwound. */
	for (int i = 0; i < SONDE_MAX_NESTED_CALLS && nested > 0; i++) {
		struct sonde_call_key key = nested_key(&outer_key, nested);
		struct sonde_span_record *inner = bpf_map_lookup_elem(&calls, &key);
		if (inner && !unwound(inner->stack_depth, depth))
			break;
		if (inner && delete_call_record(&key))
			count(SONDE_COUNTER_CALL_UNWOUND);
		nested--;
	}
	if (nested >= SONDE_MAX_NESTED_CALLS) {
		outer->nested_calls = nested;
		count(SONDE_COUNTER_CALL_NESTED);
		return -1;
	}
	struct sonde_call_key key = nested_key(&outer_key, nested + 1);
	if (!insert_call_record(&key)) {
		outer->nested_calls = nested;
		count(SONDE_COUNTER_STATE_FULL);
		return -1;
	}
	outer->nested_calls = nested + 1;
	*base = key;
	return 0;
}

/* The innermost recorded call of a probe on a goroutine/thread whose outermost
 * call, under `key`, has calls nested in it: what one of its RETs at `depth` (or
 * an end-span site, `depth` 0) ends. Calls deeper than `depth` unwound without
 * returning: they are removed and counted. `key` becomes the call's key; non-zero
 * when the returning call was not recorded (nested too deep), so nothing ends. */
__noinline int innermost_call(struct sonde_call_key *key, __u64 depth)
{
	/* The caller's key is changed in place: this function runs on top of the
	 * program's own deep stack frame, so it keeps no key of its own. */
	if (!key)
		return -1;
	struct sonde_span_record *outer = bpf_map_lookup_elem(&calls, key);
	if (!outer)
		return -1;
	__u32 slot = key->span_slot;
	__u32 nested = outer->nested_calls;
	if (nested > SONDE_MAX_NESTED_CALLS)
		nested = SONDE_MAX_NESTED_CALLS;
	for (int i = 0; i < SONDE_MAX_NESTED_CALLS && nested > 0; i++) {
		key->span_slot = slot | nested << SONDE_NESTING_SHIFT;
		struct sonde_span_record *inner = bpf_map_lookup_elem(&calls, key);
		if (inner && !(depth && inner->stack_depth > depth)) {
			if (depth && inner->stack_depth && inner->stack_depth < depth)
				return -1;   /* a call nested deeper than the bound returns */
			outer->nested_calls = nested - 1;
			return 0;
		}
		if (inner && delete_call_record(key))
			count(SONDE_COUNTER_CALL_UNWOUND);
		nested--;
	}
	key->span_slot = slot;
	outer->nested_calls = 0;
	return 0;
}

/* The incoming tracestate goes with a remote parent into the record, where the
 * trace-context program says. */
static __always_inline void keep_trace_state(struct fetch_state *state, __u64 data, __u64 length)
{
	struct sonde_context_program *program = &state->config->context;
	struct sonde_op where = {
		.out = program->trace_state_out, .len = program->trace_state_length, .capture = program->trace_state_capture,
	};
	if (data && where.len)
		copy_string(state, &where, data, length);
}

/* Function entry: a fresh record in a new trace or, when a span is active on
 * this goroutine/thread, as its child; the fetch program reads the entry
 * captures; the record waits in `calls` for its end. The span becomes the
 * active one, parent of whatever starts before it ends. */
/* A global function: the verifier checks it once, for any trace context the
 * program before it found, instead of once for each combination it finds. */
__noinline int on_entry(struct pt_regs *regs, struct sonde_probe_config *config, struct context_state *incoming)
{
	if (!config || !incoming)
		return 0;
	__u64 thread = incoming->thread;
	__u32 tgid = thread >> 32;
	__u64 owner = call_owner(config, regs);
	__u64 depth = stack_depth(config, regs);
	struct sonde_context_key context_key = { .key = owner, .tgid = tgid };
	/* A traceparent the request carries names the parent, over any local span:
	 * a server continues its caller's trace, a client whose application set
	 * one records it as its parent. */
	struct sonde_trace_context parent_context = {};
	int parent_kind;
	if (incoming->remote) {
		parent_context.trace_id_high = incoming->remote_trace_id_high;
		parent_context.trace_id_low = incoming->remote_trace_id_low;
		parent_context.span_id = incoming->remote_span_id;
		parent_context.trace_state_data = incoming->trace_state_data;
		parent_context.trace_state_length = incoming->trace_state_length;
		parent_kind = incoming->remote_flags & 1 ? PARENT_REMOTE : PARENT_REMOTE_UNSAMPLED;
	} else {
		parent_kind = find_parent(bpf_map_lookup_elem(&active_contexts, &context_key), &context_key, owner, depth,
					  &parent_context);
	}
	if (parent_kind == PARENT_UNSAMPLED)
		return 0;
	int has_parent = parent_kind != PARENT_NONE;
	__u64 trace_id_high = has_parent ? parent_context.trace_id_high : random64(thread);
	__u64 trace_id_low = has_parent ? parent_context.trace_id_low : random64(thread);
	if (parent_kind == PARENT_REMOTE_UNSAMPLED || (parent_kind == PARENT_NONE && !sampled(config, trace_id_low))) {
		/* Nothing of this trace is recorded: its probes see the marker and return. */
		parent_context = (struct sonde_trace_context){
			.trace_id_high = trace_id_high,
			.trace_id_low = trace_id_low,
			.span_id = random64(thread),
			.owner = owner,
			.span_slot = config->span_slot,
			.flags = SONDE_CONTEXT_UNSAMPLED,
			.stack_depth = depth,
		};
		set_context(&context_key, &parent_context);
		count(parent_kind == PARENT_NONE ? SONDE_COUNTER_SAMPLED_OUT : SONDE_COUNTER_PARENT_NOT_SAMPLED);
		return 0;
	}

	/* The record of the probe's last call on this goroutine/thread, free, in
	 * the common case. */
	struct sonde_call_key call_key = { .key = owner, .tgid = tgid, .span_slot = config->span_slot };
	struct sonde_span_record *record = bpf_map_lookup_elem(&calls, &call_key);
	if (!record) {
		/* The probe's first call here. */
		if (!insert_call_record(&call_key) || !(record = bpf_map_lookup_elem(&calls, &call_key))) {
			count(SONDE_COUNTER_STATE_FULL);
			return 0;
		}
	} else if (record->span_id == SONDE_SPAN_CLAIMED) {
		count(SONDE_COUNTER_STATE_FULL);   /* Engine is removing it, idle until now */
		return 0;
	} else if (record->span_id != 0) {
		/* A call of the probe is open here. */
		if (nest_call(&call_key, depth) != 0 || !(record = bpf_map_lookup_elem(&calls, &call_key)))
			return 0;
	}
	/* Taken by swapping its span_id from 0, as Engine claims an idle one. */
	__u64 span_id = random64(thread);
	if (__sync_val_compare_and_swap(&record->span_id, 0, span_id) != 0) {
		count(SONDE_COUNTER_STATE_FULL);
		return 0;
	}
	record->start_ns = bpf_ktime_get_ns();
	record->end_ns = 0;
	record->key = owner;
	record->tgid = tgid;
	record->span_slot = config->span_slot;
	record->load_bias = regs->rip - config->site_address;
	record->stack_depth = depth;
	record->failed_reads = 0;
	record->stopped = 0;
	record->data_length = 0;
	record->captured = 0;
	for (int slot = 0; slot < SONDE_SAVED_SLOTS; slot++)
		record->saved[slot] = 0;
	record->trace_id_high = trace_id_high;
	record->trace_id_low = trace_id_low;
	record->parent_span_id = has_parent ? parent_context.span_id : 0;
	record->parent_owner = parent_context.owner;
	record->parent_slot = parent_context.span_slot;
	record->context_flags = parent_kind == PARENT_REMOTE ? SONDE_PARENT_REMOTE : 0;
	record->nested_calls = 0;
	record->carrier = 0;
	if (incoming->carrier && !incoming->remote)
		await_injection(record, incoming->carrier);

	struct fetch_state state = {
		.regs = regs, .config = config, .record = record, .block = prefetched_block(config), .thread = thread,
	};
	fill_object_prefetch(config, state.block, thread);
	run_fetch_program(&state);
	if (parent_kind == PARENT_REMOTE)
		keep_trace_state(&state, parent_context.trace_state_data, parent_context.trace_state_length);

	/* The span becomes the active context, in the parent's place on the stack
	 * (the frame is near the verifier's bound). */
	parent_context = (struct sonde_trace_context){
		.trace_id_high = record->trace_id_high,
		.trace_id_low = record->trace_id_low,
		.span_id = record->span_id,
		.owner = owner,
		.span_slot = call_key.span_slot,
	};
	set_context(&context_key, &parent_context);
	return 0;
}

static __always_inline __u64 wakeup_flag(void)
{
	__u64 written = bpf_ringbuf_query(&spans, BPF_RB_PROD_POS);
	if (written < next_wakeup_position)
		return BPF_RB_NO_WAKEUP;
	__u64 threshold = bpf_ringbuf_query(&spans, BPF_RB_RING_SIZE) / WAKEUP_RING_FRACTION;
	if (bpf_ringbuf_query(&spans, BPF_RB_AVAIL_DATA) < threshold)
		return BPF_RB_NO_WAKEUP;
	next_wakeup_position = written + threshold;
	return BPF_RB_FORCE_WAKEUP;
}

/* Ends the span of `record`, under `key` in `map`, for the caller: a call is
 * released (see release_call), a stream's record deleted. When Engine
 * reclaims the same call, or two goroutines end the same stream at once, only
 * one of them succeeds, so a span is emitted or counted, never both. */
static __always_inline int claim_span(void *map, struct sonde_call_key *key, struct sonde_span_record *record, __u64 span_id)
{
	if (map == &calls)
		return release_call(key, record, span_id);
	return bpf_map_delete_elem(map, key) == 0;
}

/* The caller's span becomes active again on this goroutine/thread. */
static __always_inline void restore_parent_context(struct sonde_span_record *record, struct sonde_context_key *context_key)
{
	if (record->parent_span_id && !(record->context_flags & SONDE_PARENT_REMOTE)) {
		struct sonde_trace_context restored = {
			.trace_id_high = record->trace_id_high,
			.trace_id_low = record->trace_id_low,
			.span_id = record->parent_span_id,
			.owner = record->parent_owner,
			.span_slot = record->parent_slot,
		};
		set_context(context_key, &restored);
	} else {
		clear_context(context_key);
	}
}

/* Emits a finished span from `map` (`calls` or `object_spans`): the record
 * from trace_id_high to its last capture goes into a ring buffer slot of that
 * size, submitted only when this caller claims the span. A span that finds the
 * ring buffer full is still claimed, and counted as lost. A call's span makes
 * its parent the active context again under `restore` (NULL: not a call's)
 * between the copy and the claim: the claim's locked instruction waits for the
 * copy's stores to reach the ring buffer's lines, which the reader on another
 * CPU took last, and the context's lookup runs during that wait instead of
 * before it. */
static __always_inline void emit_span(void *map, struct sonde_call_key *key, struct sonde_span_record *record,
				      struct sonde_context_key *restore)
{
	__u64 span_id = record->span_id;
	const __u32 start = offsetof(struct sonde_span_record, trace_id_high);
	__u32 length = offsetof(struct sonde_span_record, data) - start + record->data_length;
	if (length > sizeof(*record) - start)
		length = sizeof(*record) - start;
	struct bpf_dynptr slot;
	int claimed;
	if (bpf_ringbuf_reserve_dynptr(&spans, length, 0, &slot) != 0) {
		bpf_ringbuf_discard_dynptr(&slot, BPF_RB_NO_WAKEUP);
		if (restore)
			restore_parent_context(record, restore);
		claimed = claim_span(map, key, record, span_id);
		if (claimed)
			count(SONDE_COUNTER_RING_FULL);
	} else {
		record->end_ns = bpf_ktime_get_ns();
		int written = bpf_dynptr_write(&slot, 0, &record->trace_id_high, length, 0) == 0;
		if (restore)
			restore_parent_context(record, restore);
		claimed = written && claim_span(map, key, record, span_id);
		if (claimed)
			bpf_ringbuf_submit_dynptr(&slot, wakeup_flag());
		else
			bpf_ringbuf_discard_dynptr(&slot, BPF_RB_NO_WAKEUP);
	}
	if (claimed && map == &calls)
		keep_or_delete_call_record(key);
}

/* The last reads of SONDE_OP_DEREFERENCE_PER_THREAD on a CPU, one slot for
 * each of a few threads (by thread id): a hand-off's first read (g0.m) is the
 * same every time its thread creates a goroutine, and a read of user memory
 * costs more than this array's lookup. A task may be preempted while it writes
 * or reads a slot by another writing the same slot on this CPU: a slot is used
 * only when its check matches the other three fields, which fields of two
 * writes mixed do not. */
#define PER_THREAD_READ_SLOTS 16

struct per_thread_read {
	__u64 thread;                /* bpf_get_current_pid_tgid() */
	__u64 address;
	__u64 value;
	__u64 check;                 /* read_check() of the three, written last */
};

struct per_thread_reads {
	struct per_thread_read slots[PER_THREAD_READ_SLOTS];
};

/* A mix of a slot's fields (splitmix64's finalizer between them). */
static __always_inline __u64 read_check(__u64 thread, __u64 address, __u64 value)
{
	__u64 x = thread ^ (address * 0x9e3779b97f4a7c15ULL);
	x = ((x ^ (x >> 31)) * 0xbf58476d1ce4e5b9ULL) ^ value;
	return (x ^ (x >> 29)) * 0x94d049bb133111ebULL;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct per_thread_reads);
} per_thread_reads SEC(".maps");

/* *value = the u64 at `address`, as this thread last read it on this CPU, or
 * read now and kept; 0 when the read fails. */
static __always_inline int read_per_thread(__u64 address, __u64 *value)
{
	__u64 thread = bpf_get_current_pid_tgid();
	__u32 zero = 0;
	struct per_thread_reads *reads = bpf_map_lookup_elem(&per_thread_reads, &zero);
	if (!reads)
		return 0;
	struct per_thread_read *slot = &reads->slots[(__u32)thread % PER_THREAD_READ_SLOTS];
	__u64 kept = *(volatile __u64 *)&slot->value;
	if (*(volatile __u64 *)&slot->thread == thread && *(volatile __u64 *)&slot->address == address
	    && *(volatile __u64 *)&slot->check == read_check(thread, address, kept)) {
		*value = kept;
		return 1;
	}
	if (bpf_probe_read_user(value, sizeof(*value), (void *)address) != 0)
		return 0;
	slot->thread = thread;
	slot->address = address;
	slot->value = *value;
	slot->check = read_check(thread, address, *value);
	return 1;
}

/* The creating goroutine of a HANDOFF probe: its program follows pointers from
 * a register (Go: the running g, R14, is g0 on the system stack, and the
 * creator is g0.m.curg). 0 when a read fails. */
static __always_inline __u64 creator_goroutine(struct sonde_probe_config *config, struct pt_regs *regs)
{
	__u64 value = 0;
	for (__u32 index = 0; index < SONDE_MAX_CREATOR_OPS; index++) {
		if (index >= config->op_count)
			break;
		struct sonde_op *op = &config->ops[index];
		if (op->code == SONDE_OP_LOAD_REGISTER) {
			value = register_value(regs, op->reg) + op->imm;
		} else if (op->code == SONDE_OP_ADD) {
			value += op->imm;
		} else if (op->code == SONDE_OP_DEREFERENCE_PER_THREAD) {
			if (!read_per_thread(op_address(regs, value, op), &value))
				return 0;
		} else if (op->code != SONDE_OP_DEREFERENCE
			   || bpf_probe_read_user(&value, sizeof(value), (void *)op_address(regs, value, op)) != 0) {
			return 0;
		}
	}
	return value;
}

/* A call handed a new goroutine: it starts in its creator's open trace context,
 * or in none: a g is reused after its goroutine exits, so a stale context must
 * go. */
static __always_inline int on_handoff(struct sonde_probe_config *config, struct pt_regs *regs)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct sonde_context_key created = { .key = register_value(regs, config->object_register), .tgid = tgid };
	struct sonde_context_key creator = { .key = creator_goroutine(config, regs), .tgid = tgid };
	struct sonde_trace_context *active = creator.key ? active_context(&creator) : NULL;
	struct sonde_trace_context handed = {};
	if (active)
		handed = *active;
	/* Only a span, or a marker, still open is handed on (the creator's depth is
	 * unknown here). One the creator owns is open, with no lookup: its end, or
	 * the next marker, replaces it; only Engine's reclaim can end its span
	 * first, which the new goroutine's first entry finds. */
	int open = active && (handed.owner == creator.key
			      || ((handed.flags & (SONDE_CONTEXT_UNSAMPLED | SONDE_CONTEXT_REMOTE))
					  ? marker_open(&handed, tgid, 0, 0)
					  : context_liveness(&handed, tgid, 0, 0) == CONTEXT_OPEN));
	if (!open) {
		clear_context(&created);
		return 0;
	}
	if (handed.flags & SONDE_CONTEXT_REMOTE) {
		/* The new goroutine's own until its first span ends: the extracting
		 * call may return, and set another, before it runs. */
		handed.owner = created.key;
		handed.stack_depth = 0;
	}
	set_context(&created, &handed);
	return 0;
}

/* The end of a call that has no record: inside an unsampled trace, nothing to
 * do but, at the end of its root, drop the marker; otherwise counted. A RET
 * deeper than the root's entry is a call of the same probe nested in it. */
static __always_inline int end_unrecorded_call(struct sonde_probe_config *config, struct pt_regs *regs, __u32 tgid, __u64 owner)
{
	struct sonde_context_key context_key = { .key = owner, .tgid = tgid };
	struct sonde_trace_context *active = active_context(&context_key);
	if (!active || !(active->flags & SONDE_CONTEXT_UNSAMPLED)) {
		/* Only a function's own return without its entry is counted. An
		 * end-span probe elsewhere runs without a span of its own in normal
		 * flows: one of several probes ending alternative spans (libpq's
		 * PQgetResult ends whichever statement span is open), a call whose
		 * start was already counted as not traced (calls map full). */
		if (config->at_return != SONDE_NOT_AT_RETURN && config->at_return != SONDE_AT_RET_AFTER_END_SPAN)
			count(SONDE_COUNTER_ORPHAN_RETURN);
		return 0;
	}
	if (active->owner != owner || active->span_slot != config->span_slot)
		return 0;
	__u64 root_depth = active->stack_depth;
	__u64 depth = config->at_return ? stack_depth(config, regs) : 0;
	if (!(depth && root_depth && depth > root_depth))
		clear_context(&context_key);
	return 0;
}

/* Function return (any RET site), or an end-span probe on the call's own
 * goroutine/thread: finish the call opened at entry. */
static __always_inline int on_return(struct sonde_probe_config *config, struct pt_regs *regs)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 owner = call_owner(config, regs);
	struct sonde_call_key call_key = { .key = owner, .tgid = tgid, .span_slot = config->span_slot };
	struct sonde_span_record *record = bpf_map_lookup_elem(&calls, &call_key);
	if (!record || !sonde_span_id_held(record->span_id))
		return end_unrecorded_call(config, regs, tgid, owner);
	/* The depth costs a read of user memory on Go: taken only where it decides which call
	 * ends (nested calls of the probe, a RET its end-span probe may have passed first), not at
	 * every end, such as net/http's client at its result branch. */
	__u64 depth = 0;
	if (config->at_return && (record->nested_calls || config->at_return == SONDE_AT_RET_AFTER_END_SPAN))
		depth = stack_depth(config, regs);
	if (record->nested_calls) {
		if (innermost_call(&call_key, depth) != 0 || !(record = bpf_map_lookup_elem(&calls, &call_key))
		    || !sonde_span_id_held(record->span_id))
			return 0;
	}
	/* The end-span probe ended this call: the one left open is an outer call's. */
	if (config->at_return == SONDE_AT_RET_AFTER_END_SPAN && record->stack_depth != depth)
		return 0;
	struct fetch_state state = { .regs = regs, .config = config, .record = record };
	run_fetch_program(&state);
	if (record->carrier)
		finish_injection(record);

	struct sonde_context_key context_key = { .key = owner, .tgid = tgid };
	if (!state.object) {
		emit_span(&calls, &call_key, record, &context_key);
		return 0;
	}
	restore_parent_context(record, &context_key);
	/* The span outlives the call: it stays open under the object until an
	 * END_OBJECT_SPAN probe sees that object. */
	struct sonde_call_key object_key = { .key = state.object, .tgid = tgid, .span_slot = config->span_slot };
	__u64 span_id = record->span_id;
	record->key = state.object;
	if (bpf_map_lookup_elem(&object_spans, &object_key))
		count(SONDE_COUNTER_OBJECT_SPAN_REPLACED);   /* its object was freed and reused */
	if (bpf_map_update_elem(&object_spans, &object_key, record, BPF_ANY) != 0) {
		if (release_call(&call_key, record, span_id))
			count(SONDE_COUNTER_OBJECT_SPANS_FULL);
	} else if (!release_call(&call_key, record, span_id)) {
		bpf_map_delete_elem(&object_spans, &object_key);   /* Engine reclaimed the call, and counted it */
	}
	return 0;
}

/* End of an object's span (e.g. a stream finishing, maybe on another
 * goroutine): the program adds its captures, then the span is emitted. */
static __always_inline int on_end_object_span(struct sonde_probe_config *config, struct pt_regs *regs)
{
	struct fetch_state state = { .regs = regs, .config = config };
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct sonde_call_key object_key = {
		.key = register_value(regs, config->object_register), .tgid = tgid, .span_slot = config->span_slot,
	};
	struct sonde_span_record *record = bpf_map_lookup_elem(&object_spans, &object_key);
	if (!record)
		return 0;   /* no open span: a unary call's stream, or opened before sonde attached */
	/* Two goroutines ending the same stream at once both add their captures
	 * (of the same stream); one emits it. */
	state.record = record;
	run_fetch_program(&state);
	record->captured |= SONDE_ENDED_BY_OBJECT_PROBE;
	emit_span(&object_spans, &object_key, record, NULL);
	return 0;
}

/* Enrich probe: add captures to the span another probe has open on this
 * goroutine or thread (e.g. a router's route template on the server span). */
static __always_inline int on_enrich(struct sonde_probe_config *config, struct pt_regs *regs)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct sonde_call_key call_key = { .key = call_owner(config, regs), .tgid = tgid, .span_slot = config->span_slot };
	struct sonde_span_record *record = bpf_map_lookup_elem(&calls, &call_key);
	if (!record || !sonde_span_id_held(record->span_id))
		return 0;   /* no such span open: nothing to enrich */
	if (record->nested_calls) {
		/* the innermost call of that probe: the one this runs inside */
		struct sonde_call_key inner_key = nested_key(&call_key, record->nested_calls);
		if (!(record = bpf_map_lookup_elem(&calls, &inner_key)))
			return 0;
	}
	struct fetch_state state = { .regs = regs, .config = config, .record = record };
	run_fetch_program(&state);
	return 0;
}

/* A function that reads a request's headers before the code that serves it
 * runs, here or in a goroutine it starts (grpc's operateHeaders): an incoming
 * traceparent becomes this goroutine/thread's context, a remote parent, while
 * the function runs. A marker an earlier request left is removed; an open
 * local span is kept. */
__noinline int on_extract(struct pt_regs *regs, struct sonde_probe_config *config, struct context_state *incoming)
{
	if (!config || !incoming)
		return 0;
	__u32 tgid = incoming->thread >> 32;
	__u64 owner = call_owner(config, regs);
	__u64 depth = stack_depth(config, regs);
	struct sonde_context_key context_key = { .key = owner, .tgid = tgid };
	struct sonde_trace_context *context_entry = bpf_map_lookup_elem(&active_contexts, &context_key);
	struct sonde_trace_context current = {};
	int current_kind = find_parent(context_entry, &context_key, owner, depth, &current);
	if (current_kind == PARENT_OPEN || current_kind == PARENT_UNSAMPLED)
		return 0;
	if (!incoming->remote) {
		clear_context_in(context_entry, &context_key);   /* whatever marker an earlier request left */
		return 0;
	}
	int sampled_by_caller = incoming->remote_flags & 1;
	struct sonde_trace_context marker = {
		.trace_id_high = incoming->remote_trace_id_high,
		.trace_id_low = incoming->remote_trace_id_low,
		.span_id = incoming->remote_span_id,
		.owner = owner,
		.span_slot = config->span_slot,
		.flags = SONDE_CONTEXT_REMOTE | (sampled_by_caller ? 0 : SONDE_CONTEXT_UNSAMPLED),
		.stack_depth = depth,
		.trace_state_data = incoming->trace_state_data,
		.trace_state_length = incoming->trace_state_length,
	};
	set_context_in(context_entry, &context_key, &marker);
	if (!sampled_by_caller)
		count(SONDE_COUNTER_PARENT_NOT_SAMPLED);
	return 0;
}


/* Reads the block the entry's programs read from (see struct sonde_prefetch);
 * NULL when the probe has none, or the read failed. */
static __always_inline struct sonde_prefetch *fill_prefetch(struct sonde_probe_config *config, struct pt_regs *regs,
							    __u64 thread)
{
	struct sonde_prefetch *block = prefetched_block(config);
	if (!block)
		return NULL;
	__u64 length = config->prefetch_length;
	if (length > SONDE_PREFETCH_SIZE)
		length = SONDE_PREFETCH_SIZE;
	__u64 base = register_value(regs, config->prefetch_register);
	__u64 fill = begin_fill(&block->claim);
	block->object_length = 0;
	int read = bpf_probe_read_user(block->bytes, length, (void *)base) == 0;
	block->base = base;
	block->length = length;
	return end_fill(&block->claim, fill, thread, read) ? block : NULL;
}

/* The probes that run no trace-context program: goroutine hand-offs, enrich
 * and end probes. A global function, so that its stack frame is not on the
 * chain of calls below a trace-context program's, which the verifier bounds
 * to 512 bytes in all. */
__noinline int on_state_probe(struct pt_regs *regs, struct sonde_probe_config *config)
{
	if (!config)
		return 0;
	if (config->role == SONDE_ROLE_HANDOFF)
		return on_handoff(config, regs);
	if (config->role == SONDE_ROLE_ENRICH)
		return on_enrich(config, regs);
	if (config->role == SONDE_ROLE_END_OBJECT_SPAN)
		return on_end_object_span(config, regs);
	return on_return(config, regs);
}

/* The entry point: reads the probe's configuration and hands the hit to its
 * role's handler. Handlers with large frames are global functions called from
 * here, never from each other's frames: the verifier bounds a chain of calls
 * to 512 bytes of stack (here + on_entry + nest_call: 472). */
static __always_inline int probe(struct pt_regs *regs, const int may_write)
{
	__u32 cookie = bpf_get_attach_cookie(regs);
	struct sonde_probe_config *config = bpf_map_lookup_elem(&probe_configs, &cookie);
	if (!config || config->role == 0) {
		count(SONDE_COUNTER_MISSING_CONFIG);
		return 0;
	}
	if (config->skip_flags_mask && (regs->eflags & config->skip_flags_mask))
		return 0;
	if (config->guard != SONDE_GUARD_NONE
	    && (register_value(regs, config->guard_register) == 0) != (config->guard == SONDE_GUARD_ZERO))
		return 0;
	__u32 role = config->role;
	if (role == SONDE_ROLE_START_SPAN || role == SONDE_ROLE_EXTRACT || role == SONDE_ROLE_INJECT) {
		/* The one place a trace-context program runs: the verifier walks it once. */
		struct context_state context = {
			.regs = regs, .config = config, .load_bias = regs->rip - config->site_address,
			.thread = bpf_get_current_pid_tgid(),
		};
		if (role == SONDE_ROLE_START_SPAN)
			context.block = fill_prefetch(config, regs, context.thread);
		if (role == SONDE_ROLE_INJECT && !waiting_injection(config, regs))
			return 0;   /* no client span sends this request */
		run_context_program(&context, may_write);
		if (role == SONDE_ROLE_START_SPAN)
			return on_entry(regs, config, &context);
		if (role == SONDE_ROLE_EXTRACT)
			return on_extract(regs, config, &context);
		return 0;
	}
	return on_state_probe(regs, config);
}

SEC("uprobe")
int sonde_probe(struct pt_regs *regs)
{
	return probe(regs, 0);
}

SEC("uprobe")
int sonde_probe_writing(struct pt_regs *regs)
{
	return probe(regs, 1);
}

/* Run by Engine (BPF_PROG_TEST_RUN) to take an entry out of `calls` or
 * `active_contexts` (see struct sonde_claim): a call it gives up (its process
 * exited, or it is past the maximum age), a stale context, or an entry left
 * free. Returns 1 when the entry was still `claim->span_id`'s, and is now
 * deleted; 0 when a probe ended, reused or replaced it first. */
SEC("syscall")
int sonde_claim_entry(struct sonde_claim *claim)
{
	struct sonde_call_key key = claim->key;
	__u64 span_id = claim->span_id;
	if (claim->map == SONDE_CLAIM_CONTEXTS) {
		struct sonde_context_key context_key = { .key = key.key, .tgid = key.tgid };
		struct sonde_trace_context *context = bpf_map_lookup_elem(&active_contexts, &context_key);
		if (!context || __sync_val_compare_and_swap(&context->span_id, span_id, SONDE_SPAN_CLAIMED) != span_id)
			return 0;
		delete_context_entry(&context_key);
		return 1;
	}
	struct sonde_span_record *record = bpf_map_lookup_elem(&calls, &key);
	if (!record)
		return 0;
	if (is_nested(&key))
		return record->span_id == span_id && delete_call_record(&key);
	if (__sync_val_compare_and_swap(&record->span_id, span_id, SONDE_SPAN_CLAIMED) != span_id)
		return 0;
	delete_call_record(&key);
	return 1;
}

static __always_inline int report_process(__u32 kind, __u32 pid)
{
	struct sonde_process_event event = { .kind = kind, .pid = pid };
	/* The first report the reader has not read wakes it, so that a service is
	 * traced as it starts; the next ones wait for that read, so that a burst
	 * of execs costs one wakeup, not an interrupt each. */
	__u64 wakeup = bpf_ringbuf_query(&process_events, BPF_RB_AVAIL_DATA) == 0 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&process_events, &event, sizeof(event), wakeup) != 0)
		count(SONDE_COUNTER_PROCESS_EVENTS_LOST);
	return 0;
}

/* After execve replaced the program: the current task is the process's main
 * thread (a thread that runs execve becomes it). */
SEC("raw_tp/sched_process_exec")
int sonde_process_exec(void *context)
{
	return report_process(SONDE_PROCESS_EXEC, bpf_get_current_pid_tgid() >> 32);
}

/* Every exiting thread passes here; only the main thread's exit is reported. */
SEC("raw_tp/sched_process_exit")
int sonde_process_exit(void *context)
{
	__u64 ids = bpf_get_current_pid_tgid();
	if ((__u32)ids != (__u32)(ids >> 32))
		return 0;
	return report_process(SONDE_PROCESS_EXIT, ids >> 32);
}
