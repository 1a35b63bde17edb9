// SPDX-License-Identifier: GPL-2.0
/* Sonde's one generic uprobe program. Every probe site of every pack runs this
 * code; the BPF cookie of the site selects a probe configuration whose fetch
 * program says what to read. New packs never need a new BPF program. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "sonde_abi.h"

char LICENSE[] SEC("license") = "GPL";

/* x86-64 user registers as a uprobe sees them (uapi pt_regs layout). */
struct x86_64_regs {
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
 * buffer that a preempting task could overwrite. A plain hash, not an LRU:
 * an LRU evicts long before it is full (CPUs keep batches of free nodes), and
 * an evicted call would be lost without a count. Nothing stays for ever:
 * a call that unwinds without returning (panic, Goexit) is found and counted
 * at the next entry on its goroutine/thread, and Engine reclaims, counted, the
 * calls of processes that exited and calls past a maximum age. When full,
 * new entries are counted (SONDE_COUNTER_STATE_FULL) and not traced. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SONDE_MAX_CALLS);
	__type(key, struct sonde_call_key);
	__type(value, struct sonde_span_record);
} calls SEC(".maps");

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

/* The creator's trace context while a goroutine is being created, keyed by the
 * thread (pid_tgid) that runs both calls of the hand-off, and removed by the
 * second. Empty between creations. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SONDE_MAX_HANDOFFS);
	__type(key, __u64);
	__type(value, struct sonde_trace_context);
} handoffs SEC(".maps");

/* The head sampler's setting, written by Engine before attaching. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sonde_sampling);
} sampling SEC(".maps");

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

/* Below this much unread data, emitted spans do not wake the reader, which
 * polls on a short timer instead: no wakeup per event. */
#define WAKEUP_THRESHOLD (256 * 1024)

struct fetch_state {
	__u64 registers[16];         /* DWARF register order */
	struct sonde_probe_config *config;
	struct sonde_span_record *record;
	__u64 value;
	__u64 object;                /* set by SET_OBJECT: the span stays open under it */
	__u32 skipping;              /* a read failed: skip to the end of this capture */
};

static __always_inline void count(__u32 counter)
{
	__u64 *slot = bpf_map_lookup_elem(&counters, &counter);
	if (slot)
		__sync_fetch_and_add(slot, 1);
}

static __always_inline __u64 random64(void)
{
	return ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
}

static __always_inline __u8 *data_at(struct sonde_span_record *record, __u16 out)
{
	return record->data + (out & (SONDE_DATA_SIZE - 1));
}

static __always_inline void mark_captured(struct sonde_span_record *record, struct sonde_op *op)
{
	record->captured |= 1u << (op->capture & 31);
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
	mark_captured(state->record, op);
}

static long run_op(__u32 index, void *context)
{
	struct fetch_state *state = context;
	if (index >= SONDE_MAX_OPS)
		return 1;
	struct sonde_op *op = &state->config->ops[index];
	struct sonde_span_record *record = state->record;
	__u64 words[2] = {};

	if (state->skipping) {
		/* A capture ends with the op that stores it; the next one starts afresh. */
		if (op->code >= SONDE_OP_READ_GO_STRING)
			state->skipping = 0;
		return 0;
	}

	switch (op->code) {
	case SONDE_OP_LOAD_REGISTER:
		state->value = state->registers[op->reg & 15];
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
		if (bpf_probe_read_user(&words[0], 8, (void *)state->value) != 0) {
			record->failed_reads += 1;
			state->skipping = 1;   /* this capture is absent; later ones still run */
			break;
		}
		state->value = words[0];
		break;
	case SONDE_OP_EXPECT_ADDRESS:
		if (state->value != (__u64)op->imm + record->load_bias) {
			record->stopped = 1;
			return 1;
		}
		break;
	case SONDE_OP_READ_GO_STRING:
		if (bpf_probe_read_user(words, 16, (void *)state->value) != 0) {
			record->failed_reads += 1;
			break;
		}
		copy_string(state, op, words[0], words[1]);
		break;
	case SONDE_OP_READ_STRING_REGISTERS:
		copy_string(state, op, state->registers[op->reg & 15], state->registers[op->imm & 15]);
		break;
	case SONDE_OP_READ_INTEGER: {
		__u32 size = op->len;
		if (size > 8)
			size = 8;
		if (size == 0)
			size = 1;
		if (bpf_probe_read_user(&words[0], size, (void *)state->value) != 0) {
			record->failed_reads += 1;
			break;
		}
		*(__u64 *)data_at(record, op->out) = words[0];
		mark_captured(record, op);
		break;
	}
	case SONDE_OP_STORE_VALUE:
		*(__u64 *)data_at(record, op->out) = state->value;
		mark_captured(record, op);
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

static __always_inline void load_registers(struct fetch_state *state, struct x86_64_regs *regs)
{
	state->registers[0] = regs->rax;
	state->registers[1] = regs->rdx;
	state->registers[2] = regs->rcx;
	state->registers[3] = regs->rbx;
	state->registers[4] = regs->rsi;
	state->registers[5] = regs->rdi;
	state->registers[6] = regs->rbp;
	state->registers[7] = regs->rsp;
	state->registers[8] = regs->r8;
	state->registers[9] = regs->r9;
	state->registers[10] = regs->r10;
	state->registers[11] = regs->r11;
	state->registers[12] = regs->r12;
	state->registers[13] = regs->r13;
	state->registers[14] = regs->r14;
	state->registers[15] = regs->r15;
}

static __always_inline __u64 call_owner(struct sonde_probe_config *config, struct x86_64_regs *regs)
{
	if (config->key_mode == SONDE_KEY_GOROUTINE)
		return regs->r14;
	return (__u32)bpf_get_current_pid_tgid();
}

/* Makes `context` the active one on a goroutine/thread; counted when the map is full. */
static __always_inline void set_context(struct sonde_context_key *key, struct sonde_trace_context *context)
{
	if (bpf_map_update_elem(&active_contexts, key, context, BPF_ANY) != 0)
		count(SONDE_COUNTER_CONTEXTS_FULL);
}

/* How deep the stack is at this site: bytes below the top of the goroutine's
 * stack for Go (the runtime moves a growing stack, keeping these distances),
 * the inverted stack pointer for a native thread. Deeper is larger; 0 when
 * unknown, which disables the checks that compare depths. */
static __always_inline __u64 stack_depth(struct sonde_probe_config *config, struct x86_64_regs *regs)
{
	if (config->key_mode == SONDE_KEY_GOROUTINE) {
		__u64 stack_hi = 0;
		if (bpf_probe_read_user(&stack_hi, sizeof(stack_hi), (void *)(regs->r14 + SONDE_GO_G_STACK_HI_OFFSET)) != 0
		    || stack_hi < regs->rsp)
			return 0;
		return stack_hi - regs->rsp;
	}
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
	if (bpf_map_delete_elem(&calls, &key) == 0)
		count(SONDE_COUNTER_CALL_UNWOUND);
	context->span_id = parent_span;
	context->owner = parent_owner;
	context->span_slot = parent_slot;
	return parent_span ? CONTEXT_UNWOUND : CONTEXT_GONE;
}

/* Whether an unsampled root's marker still holds, from an entry on `owner` at
 * `depth`: on the root's own goroutine/thread until an entry as shallow as
 * the root (it unwound, or the next request began); elsewhere (a goroutine
 * it started) while the root's goroutine still has this very marker. */
static __always_inline int unsampled_root_open(struct sonde_trace_context *marker, __u32 tgid, __u64 owner, __u64 depth)
{
	if (marker->owner == owner)
		return !unwound(marker->stack_depth, depth);
	struct sonde_context_key root_key = { .key = marker->owner, .tgid = tgid };
	struct sonde_trace_context *root = bpf_map_lookup_elem(&active_contexts, &root_key);
	return root && (root->flags & SONDE_CONTEXT_UNSAMPLED) && root->span_id == marker->span_id;
}

/* How many unwound calls one entry looks past for a span still open. */
#define MAX_UNWOUND_ANCESTORS 4

enum parent_kind {
	PARENT_NONE = 0,             /* a root: the sampler decides */
	PARENT_OPEN = 1,             /* a child of the open span in `parent` */
	PARENT_UNSAMPLED = 2,        /* inside a trace the sampler did not record */
};

/* The open span an entry on `owner` at `depth` descends from, found from the
 * active context by skipping calls that unwound. */
static __always_inline int find_parent(struct sonde_context_key *context_key, __u64 owner, __u64 depth,
				       struct sonde_trace_context *parent)
{
	struct sonde_trace_context *active = bpf_map_lookup_elem(&active_contexts, context_key);
	if (!active)
		return PARENT_NONE;
	*parent = *active;   /* a copy: the element may be replaced while this runs */
	if (parent->flags & SONDE_CONTEXT_UNSAMPLED)
		return unsampled_root_open(parent, context_key->tgid, owner, depth) ? PARENT_UNSAMPLED : PARENT_NONE;
	for (int level = 0; level < MAX_UNWOUND_ANCESTORS; level++) {
		int liveness = context_liveness(parent, context_key->tgid, owner, depth);
		if (liveness != CONTEXT_UNWOUND)
			return liveness == CONTEXT_OPEN ? PARENT_OPEN : PARENT_NONE;
	}
	return PARENT_NONE;
}

/* A root span is recorded when the sampler keeps its trace id. */
static __always_inline int sampled(__u64 trace_id_low)
{
	__u32 zero = 0;
	struct sonde_sampling *setting = bpf_map_lookup_elem(&sampling, &zero);
	return setting && (trace_id_low >> 1) < setting->threshold;
}

/* Function entry: a fresh record in a new trace or, when a span is active on
 * this goroutine/thread, as its child; the fetch program reads the entry
 * captures; the record waits in `calls` for its end. The span becomes the
 * active one, parent of whatever starts before it ends. */
static __always_inline int on_entry(struct sonde_probe_config *config, struct x86_64_regs *regs)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 owner = call_owner(config, regs);
	__u64 depth = stack_depth(config, regs);
	struct sonde_context_key context_key = { .key = owner, .tgid = tgid };
	struct sonde_trace_context parent_context = {};
	int parent_kind = find_parent(&context_key, owner, depth, &parent_context);
	if (parent_kind == PARENT_UNSAMPLED)
		return 0;
	struct sonde_trace_context *parent = parent_kind == PARENT_OPEN ? &parent_context : NULL;
	__u64 trace_id_high = parent ? parent->trace_id_high : random64();
	__u64 trace_id_low = parent ? parent->trace_id_low : random64();
	if (!parent && !sampled(trace_id_low)) {
		/* Nothing of this trace is recorded: its probes see the marker and return. */
		struct sonde_trace_context marker = {
			.trace_id_high = trace_id_high,
			.trace_id_low = trace_id_low,
			.span_id = random64(),
			.owner = owner,
			.span_slot = config->span_slot,
			.flags = SONDE_CONTEXT_UNSAMPLED,
			.stack_depth = depth,
		};
		set_context(&context_key, &marker);
		count(SONDE_COUNTER_SAMPLED_OUT);
		return 0;
	}

	struct sonde_call_key call_key = { .key = owner, .tgid = tgid, .span_slot = config->span_slot };
	if (bpf_map_update_elem(&calls, &call_key, &empty_record, BPF_NOEXIST) != 0) {
		/* A call of this probe still recorded here never returned: it unwound,
		 * or this entry is nested in it (recursion). Either way it is lost; say
		 * which. Without one, the map is full. */
		struct sonde_span_record *stale = bpf_map_lookup_elem(&calls, &call_key);
		if (stale)
			count(unwound(stale->stack_depth, depth) ? SONDE_COUNTER_CALL_UNWOUND : SONDE_COUNTER_CALL_NESTED);
		if (!stale || bpf_map_update_elem(&calls, &call_key, &empty_record, BPF_ANY) != 0) {
			count(SONDE_COUNTER_STATE_FULL);
			return 0;
		}
	}
	struct sonde_span_record *record = bpf_map_lookup_elem(&calls, &call_key);
	if (!record)
		return 0;

	record->start_ns = bpf_ktime_get_ns();
	record->end_ns = 0;
	record->key = owner;
	record->tgid = tgid;
	record->span_slot = config->span_slot;
	record->load_bias = regs->rip - config->site_address;
	record->stack_depth = depth;
	record->span_id = random64();
	record->trace_id_high = trace_id_high;
	record->trace_id_low = trace_id_low;
	if (parent) {
		record->parent_span_id = parent->span_id;
		record->parent_owner = parent->owner;
		record->parent_slot = parent->span_slot;
	} else {
		record->parent_span_id = 0;
	}

	struct fetch_state state = { .config = config, .record = record };
	load_registers(&state, regs);
	run_fetch_program(&state);

	struct sonde_trace_context current = {
		.trace_id_high = record->trace_id_high,
		.trace_id_low = record->trace_id_low,
		.span_id = record->span_id,
		.owner = owner,
		.span_slot = config->span_slot,
	};
	set_context(&context_key, &current);
	return 0;
}

static __always_inline __u64 wakeup_flag(void)
{
	__u64 unread = bpf_ringbuf_query(&spans, BPF_RB_AVAIL_DATA);
	return unread >= WAKEUP_THRESHOLD ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* Takes a finished span out of `map` (`calls` or `object_spans`) into its own
 * ring buffer slot, which no other task can touch; NULL when there is nothing
 * to emit. The delete is the claim: when the Engine reclaims the same call, or
 * two goroutines end the same stream at once, only the one whose delete
 * succeeds emits it, so a span is emitted or counted, never both. A span that
 * finds the ring buffer full is still claimed, and counted as lost. */
static __always_inline struct sonde_span_record *claim_span(void *map, struct sonde_call_key *key,
							    struct sonde_span_record *record)
{
	struct sonde_span_record *copy = bpf_ringbuf_reserve(&spans, sizeof(*copy), 0);
	if (!copy) {
		if (bpf_map_delete_elem(map, key) == 0)
			count(SONDE_COUNTER_RING_FULL);
		return NULL;
	}
	if (bpf_probe_read_kernel(copy, sizeof(*copy), record) != 0 || bpf_map_delete_elem(map, key) != 0) {
		bpf_ringbuf_discard(copy, BPF_RB_NO_WAKEUP);
		return NULL;
	}
	return copy;
}

/* Ends a claimed span now and hands it to user space. */
static __always_inline void submit_span(struct sonde_span_record *copy)
{
	copy->end_ns = bpf_ktime_get_ns();
	bpf_ringbuf_submit(copy, wakeup_flag());
}

/* The caller's span becomes active again on this goroutine/thread. */
static __always_inline void restore_parent_context(struct sonde_span_record *record, struct sonde_context_key *context_key)
{
	if (record->parent_span_id) {
		struct sonde_trace_context restored = {
			.trace_id_high = record->trace_id_high,
			.trace_id_low = record->trace_id_low,
			.span_id = record->parent_span_id,
			.owner = record->parent_owner,
			.span_slot = record->parent_slot,
		};
		set_context(context_key, &restored);
	} else {
		bpf_map_delete_elem(&active_contexts, context_key);
	}
}

/* A register by DWARF number. */
static __always_inline __u64 register_value(struct x86_64_regs *regs, __u32 number)
{
	struct fetch_state state = {};
	load_registers(&state, regs);
	return state.registers[number & 15];
}

/* The call creating a goroutine: the creator's open trace context waits for
 * the hand-off call on this thread. Nothing waits when it has none, and an
 * earlier wait this thread left (attached between the two calls) is dropped. */
static __always_inline int on_start_handoff(struct sonde_probe_config *config, struct x86_64_regs *regs)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct sonde_context_key creator = { .key = register_value(regs, config->object_register), .tgid = thread >> 32 };
	struct sonde_trace_context *active = bpf_map_lookup_elem(&active_contexts, &creator);
	struct sonde_trace_context inherited = {};
	if (active)
		inherited = *active;
	/* Only a span, or an unsampled root, still open is handed on (the creator's
	 * depth is unknown here). */
	int open = active && ((inherited.flags & SONDE_CONTEXT_UNSAMPLED)
				      ? unsampled_root_open(&inherited, creator.tgid, 0, 0)
				      : context_liveness(&inherited, creator.tgid, 0, 0) == CONTEXT_OPEN);
	if (!open) {
		bpf_map_delete_elem(&handoffs, &thread);
		return 0;
	}
	if (bpf_map_update_elem(&handoffs, &thread, &inherited, BPF_ANY) != 0)
		count(SONDE_COUNTER_CONTEXTS_FULL);
	return 0;
}

/* The call handed the new goroutine: it starts in the waiting context, or in
 * none: a g is reused after its goroutine exits, so a stale context must go. */
static __always_inline int on_end_handoff(struct sonde_probe_config *config, struct x86_64_regs *regs)
{
	__u64 thread = bpf_get_current_pid_tgid();
	struct sonde_context_key created = { .key = register_value(regs, config->object_register), .tgid = thread >> 32 };
	struct sonde_trace_context *inherited = bpf_map_lookup_elem(&handoffs, &thread);
	if (!inherited) {
		bpf_map_delete_elem(&active_contexts, &created);
		return 0;
	}
	set_context(&created, inherited);
	bpf_map_delete_elem(&handoffs, &thread);
	return 0;
}

/* The end of a call that has no record: inside an unsampled trace, nothing to
 * do but, at the end of its root, drop the marker; otherwise counted. */
static __always_inline int end_unrecorded_call(struct sonde_probe_config *config, __u32 tgid, __u64 owner)
{
	struct sonde_context_key context_key = { .key = owner, .tgid = tgid };
	struct sonde_trace_context *active = bpf_map_lookup_elem(&active_contexts, &context_key);
	if (!active || !(active->flags & SONDE_CONTEXT_UNSAMPLED)) {
		count(SONDE_COUNTER_ORPHAN_RETURN);
		return 0;
	}
	if (active->owner == owner && active->span_slot == config->span_slot)
		bpf_map_delete_elem(&active_contexts, &context_key);
	return 0;
}

/* Function return (any RET site), or an end-span probe on the call's own
 * goroutine/thread: finish the call opened at entry. */
static __always_inline int on_return(struct sonde_probe_config *config, struct x86_64_regs *regs)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 owner = call_owner(config, regs);
	struct sonde_call_key call_key = { .key = owner, .tgid = tgid, .span_slot = config->span_slot };
	struct sonde_span_record *record = bpf_map_lookup_elem(&calls, &call_key);
	if (!record)
		return end_unrecorded_call(config, tgid, owner);
	struct fetch_state state = { .config = config, .record = record };
	load_registers(&state, regs);
	run_fetch_program(&state);

	struct sonde_context_key context_key = { .key = owner, .tgid = tgid };
	restore_parent_context(record, &context_key);
	if (!state.object) {
		struct sonde_span_record *copy = claim_span(&calls, &call_key, record);
		if (copy)
			submit_span(copy);
		return 0;
	}
	/* The span outlives the call: it stays open under the object until an
	 * END_OBJECT_SPAN probe sees that object. */
	struct sonde_call_key object_key = { .key = state.object, .tgid = tgid, .span_slot = config->span_slot };
	record->key = state.object;
	if (bpf_map_lookup_elem(&object_spans, &object_key))
		count(SONDE_COUNTER_OBJECT_SPAN_REPLACED);   /* its object was freed and reused */
	if (bpf_map_update_elem(&object_spans, &object_key, record, BPF_ANY) != 0)
		count(SONDE_COUNTER_OBJECT_SPANS_FULL);
	bpf_map_delete_elem(&calls, &call_key);
	return 0;
}

/* End of an object's span (e.g. a stream finishing, maybe on another
 * goroutine): the program adds its captures, then the span is emitted. */
static __always_inline int on_end_object_span(struct sonde_probe_config *config, struct x86_64_regs *regs)
{
	struct fetch_state state = { .config = config };
	load_registers(&state, regs);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct sonde_call_key object_key = {
		.key = state.registers[config->object_register & 15], .tgid = tgid, .span_slot = config->span_slot,
	};
	struct sonde_span_record *record = bpf_map_lookup_elem(&object_spans, &object_key);
	if (!record)
		return 0;   /* no open span: a unary call's stream, or opened before sonde attached */
	struct sonde_span_record *copy = claim_span(&object_spans, &object_key, record);
	if (!copy)
		return 0;
	state.record = copy;
	run_fetch_program(&state);
	copy->captured |= SONDE_ENDED_BY_OBJECT_PROBE;
	submit_span(copy);
	return 0;
}

/* Enrich probe: add captures to the span another probe has open on this
 * goroutine or thread (e.g. a router's route template on the server span). */
static __always_inline int on_enrich(struct sonde_probe_config *config, struct x86_64_regs *regs)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct sonde_call_key call_key = { .key = call_owner(config, regs), .tgid = tgid, .span_slot = config->span_slot };
	struct sonde_span_record *record = bpf_map_lookup_elem(&calls, &call_key);
	if (!record)
		return 0;   /* no such span open: nothing to enrich */
	struct fetch_state state = { .config = config, .record = record };
	load_registers(&state, regs);
	run_fetch_program(&state);
	return 0;
}

SEC("uprobe")
int sonde_probe(struct x86_64_regs *regs)
{
	__u32 cookie = bpf_get_attach_cookie(regs);
	struct sonde_probe_config *config = bpf_map_lookup_elem(&probe_configs, &cookie);
	if (!config || config->role == 0) {
		count(SONDE_COUNTER_MISSING_CONFIG);
		return 0;
	}
	if (config->skip_flags_mask && (regs->eflags & config->skip_flags_mask))
		return 0;
	if (config->role == SONDE_ROLE_START_SPAN)
		return on_entry(config, regs);
	if (config->role == SONDE_ROLE_START_HANDOFF)
		return on_start_handoff(config, regs);
	if (config->role == SONDE_ROLE_END_HANDOFF)
		return on_end_handoff(config, regs);
	if (config->role == SONDE_ROLE_ENRICH)
		return on_enrich(config, regs);
	if (config->role == SONDE_ROLE_END_OBJECT_SPAN)
		return on_end_object_span(config, regs);
	return on_return(config, regs);
}
