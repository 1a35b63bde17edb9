/* The contract between the generic BPF program and Sonde's Engine: the probe
 * configuration user space writes, the span record the program emits, the
 * counters and the map names. This header is its one author: the BPF program
 * includes it, and Swift imports it as the SondeABI module (bpf/module.modulemap),
 * so Planning and Engine read these numbers and layouts instead of restating them. */
#ifndef SONDE_ABI_H
#define SONDE_ABI_H

#include <linux/types.h>

/* Map names, as the BPF object declares them and Engine looks them up. */
#define SONDE_MAP_PROBE_CONFIGS "probe_configs"
#define SONDE_MAP_CALLS "calls"
#define SONDE_MAP_OBJECT_SPANS "object_spans"
#define SONDE_MAP_ACTIVE_CONTEXTS "active_contexts"
#define SONDE_MAP_INJECTIONS "injections"
#define SONDE_MAP_COUNTERS "counters"
#define SONDE_MAP_SPANS "spans"
#define SONDE_MAP_PREFETCH "prefetch"
#define SONDE_MAP_LIMITS "limits"
#define SONDE_PROGRAM_NAME "sonde_probe"
/* The same program able to write trace context into the target's memory
 * (bpf_probe_write_user). Loaded instead of sonde_probe only when outgoing
 * propagation is on: a kernel in lockdown refuses any program using it. */
#define SONDE_WRITING_PROGRAM_NAME "sonde_probe_writing"
/* The program Engine runs (BPF_PROG_TEST_RUN, a struct sonde_claim as its
 * context) to take an entry of `calls` or `active_contexts` from the probes:
 * see SONDE_SPAN_CLAIMED. */
#define SONDE_CLAIM_PROGRAM_NAME "sonde_claim_entry"
/* The machine's process starts and ends, for a sonde that follows services
 * (sonde.yaml) as they start instead of scanning /proc: two raw tracepoint
 * programs, attached only then, write struct sonde_process_event records into
 * the `process_events` ring buffer. */
#define SONDE_MAP_PROCESS_EVENTS "process_events"
#define SONDE_EXEC_PROGRAM_NAME "sonde_process_exec"
#define SONDE_EXIT_PROGRAM_NAME "sonde_process_exit"

/* Sizes of the maps, fixed at load. `probe_configs` holds three configurations
 * per probe: its entry's, its returns' and its result branches' (a span's usual
 * end right after a call, `ends-after-call`); so a plan has at most 512 probes. */
#define SONDE_CONFIGS_PER_PROBE 3
#define SONDE_MAX_PROBE_CONFIGS (512 * SONDE_CONFIGS_PER_PROBE)
#define SONDE_MAX_CALLS 16384        /* calls in flight at once, all processes */
#define SONDE_MAX_OBJECT_SPANS 8192  /* spans kept open under an object (streams) */
#define SONDE_MAX_CONTEXTS 16384     /* goroutines/threads with an active trace context */
#define SONDE_MAX_INJECTIONS 4096    /* client spans whose trace context waits to be written */
#define SONDE_MAX_NESTED_CALLS 7     /* calls of a probe open inside its outermost call on one
                                      * goroutine/thread; deeper ones are counted, not recorded */
#define SONDE_NESTING_SHIFT 16       /* a nested call's level in its `calls` key's span slot */

#define SONDE_MAX_OPS 32
#define SONDE_MAX_CONTEXT_OPS 12     /* ops of a probe's trace-context program */
#define SONDE_MAX_CREATOR_OPS 6      /* ops of a HANDOFF probe's program reaching the creator */
#define SONDE_SAVED_SLOTS 4
#define SONDE_DATA_SIZE 512          /* capture area of one span record */
#define SONDE_PREFETCH_SIZE 256      /* bytes one prefetch reads at most */
#define SONDE_MAX_STRING 255         /* longest string one op copies */
#define SONDE_MAX_LIST_NODES 16      /* nodes FIND_IN_LIST looks at before giving up */
/* Set in a stored string's u16 length when the string was longer than its
 * capture's bound and was cut there. */
#define SONDE_STRING_TRUNCATED 0x8000

/* What a probe site does to tracing state. */
enum sonde_role {
	SONDE_ROLE_START_SPAN = 1,   /* function entry: open a span */
	SONDE_ROLE_END_SPAN = 2,     /* function return, or an end-span probe's entry on the call's
	                              * goroutine/thread: close and emit the span or, when the
	                              * program sets an object, keep it open in `object_spans` */
	SONDE_ROLE_HANDOFF = 3,      /* a call passed a new goroutine (*g) in `object_register`: it
	                              * starts in the trace context of the creator, the *g the
	                              * program reaches from registers (LOAD_REGISTER, ADD and
	                              * DEREFERENCE only; SONDE_MAX_CREATOR_OPS) */
	                             /* 4: unused (the second site of a two-site hand-off, once) */
	SONDE_ROLE_ENRICH = 5,       /* entry only: the program writes into the open call of
	                              * probe `span_slot` on this goroutine/thread */
	SONDE_ROLE_END_OBJECT_SPAN = 6, /* entry only: the program writes into the span probe
	                              * `span_slot` left open for the object in register
	                              * `object_register`, which is then emitted */
	SONDE_ROLE_INJECT = 7,       /* entry only: the trace context of span probe `span_slot` waiting
	                              * in `injections` under the carrier in `object_register` is
	                              * written by the trace-context program (SONDE_CONTEXT_INJECT) */
	SONDE_ROLE_EXTRACT = 8,      /* entry only: the trace-context program's incoming traceparent
	                              * becomes this goroutine/thread's context (SONDE_CONTEXT_REMOTE)
	                              * while the function runs, and that of goroutines it starts */
};

/* Set in a record's `captured` mask when an END_OBJECT_SPAN probe ended the
 * span; captures use bits 0..30. */
#define SONDE_ENDED_BY_OBJECT_PROBE (1u << 31)
#define SONDE_MAX_CAPTURES 31

/* Offset of `stack.hi` in Go's runtime.g: `stack` is g's first field in every
 * Go release ({lo, hi uintptr}). A call's depth below the top of its
 * goroutine's stack survives the runtime moving the stack when it grows. */
#define SONDE_GO_G_STACK_HI_OFFSET 8

/* object_register when a site keys nothing by object. */
#define SONDE_NO_OBJECT_REGISTER 0xff

/* How the state of one call is keyed. */
enum sonde_key_mode {
	SONDE_KEY_GOROUTINE = 0,     /* Go: the g pointer in R14; goroutines hop threads */
	SONDE_KEY_THREAD = 1,        /* native code: the thread id */
};

/* Fetch-program operations. `value` is the program's one working register.
 * The ops from READ_GO_STRING to READ_STRING_REGISTERS, and READ_C_STRING,
 * store a capture and so end one. The memory ops (DEREFERENCE, READ_GO_STRING,
 * READ_INTEGER, READ_C_STRING) first set value = (reg & SONDE_OP_FROM_REGISTER ?
 * register[reg & 15] : value) + imm and read there: Engine folds the loads and
 * adds before them into them, so that the BPF loop runs fewer ops. A
 * trace-context program (struct sonde_context_program) runs before the span
 * starts, without a record: LOAD_REGISTER, ADD, DEREFERENCE and EXPECT_ADDRESS
 * only, then its action. */
enum sonde_op_code {
	SONDE_OP_LOAD_REGISTER = 1,  /* value = register[reg] (DWARF numbering) + imm */
	SONDE_OP_LOAD_SAVED = 2,     /* value = saved[reg] (kept from entry) */
	SONDE_OP_SAVE = 3,           /* saved[reg] = value */
	SONDE_OP_ADD = 4,            /* value += imm */
	SONDE_OP_DEREFERENCE = 5,    /* value = *(u64 *)value (at the memory ops' address, above) */
	SONDE_OP_EXPECT_ADDRESS = 6, /* stop unless value == imm + load bias (Go itab check) */
	SONDE_OP_READ_GO_STRING = 7, /* value points at {ptr, len}: copy <= len bytes to data[out] */
	SONDE_OP_READ_INTEGER = 8,   /* copy len (1..8) bytes at value to data[out] */
	SONDE_OP_STORE_VALUE = 9,    /* data[out] = value (8 bytes) */
	SONDE_OP_READ_STRING_REGISTERS = 10, /* string in registers reg (ptr) and imm (len) */
	SONDE_OP_SET_OBJECT = 11,    /* at a span's return: keep it open under object `value` */
	SONDE_OP_READ_C_STRING = 12, /* value is a NUL-terminated string (C char *): copy <= len bytes */
	SONDE_OP_FIND_IN_LIST = 13,  /* value is a linked list's first node: value = the first node
	                              * whose reg-byte key at offset len equals imm, following the
	                              * pointer at offset out; the capture is absent when none does */
	SONDE_OP_DEREFERENCE_PER_THREAD = 14, /* HANDOFF programs: a DEREFERENCE whose result is the
	                              * same whenever the running thread reads that address (Go: the
	                              * running goroutine's g.m, the thread's M), kept per CPU for that
	                              * thread and address */
};

/* In a memory op's `reg`: its address starts from register reg & 15, not from value. */
#define SONDE_OP_FROM_REGISTER 0x80

/* A site that acts only for some values of a register: a return probe's
 * `when-result` (C: the call that returns no more results). */
enum sonde_guard {
	SONDE_GUARD_NONE = 0,
	SONDE_GUARD_ZERO = 1,        /* only when the register is 0 (a null pointer) */
	SONDE_GUARD_NON_ZERO = 2,    /* only when it is not */
};

/* Where a span's end site runs (`at_return`), for telling nested calls apart by stack depth. */
enum sonde_return_site {
	SONDE_NOT_AT_RETURN = 0,     /* an end-span probe's site elsewhere: depth unknown */
	SONDE_AT_RET_INSTRUCTION = 1, /* a RET of the span's own function: the stack is as deep as at
	                              * the entry site (which precedes every stack adjustment) */
	SONDE_AFTER_RETURN = 2,      /* a return probe (uretprobe): the return address is popped */
	SONDE_IN_GO_FRAME = 3,       /* a result branch (ends-after-call) in the body of the span's
	                              * own Go function, whose frame pointer RBP is 8 bytes below the
	                              * return address: the entry site's stack pointer is RBP + 8 */
	SONDE_AT_RET_AFTER_END_SPAN = 4, /* a RET of the span's own function that its end-span probe
	                              * may have passed first (ends-at-return after a failed call):
	                              * a call already ended is not counted, and only the call
	                              * entered at this very depth ends here, not an outer one */
};

/* What a trace-context program does once its ops (LOAD_REGISTER, ADD,
 * DEREFERENCE, EXPECT_ADDRESS) have reached a request's headers: one fixed
 * step, not more ops, so that the verifier walks the header search once. */
enum sonde_context_action {
	SONDE_CONTEXT_EXTRACT = 1,   /* read the traceparent (and tracestate) the headers carry */
	SONDE_CONTEXT_INJECT = 2,    /* append the waiting traceparent to a buffered writer */
};

/* How headers are stored. */
enum sonde_header_carrier {
	SONDE_CARRIER_GO_MAP_BUCKETS = 1, /* Go map[string][]string, Go <= 1.23 (runtime.hmap): 2^B
	                              * buckets of 8, overflow chains; the first value counts */
	SONDE_CARRIER_GO_MAP_SWISS = 2, /* the same from Go 1.24 (internal/runtime/maps.Map): groups of 8 */
	SONDE_CARRIER_FIELD_SLICE = 3, /* a Go slice of {Name, Value string, ...} (hpack.HeaderField) */
};

/* Header names are literals: each zero-padded in a slot of its own. */
#define SONDE_LITERAL_SLOTS 2
#define SONDE_LITERAL_SLOT_SIZE 16   /* so a name has at most 15 bytes */

/* A W3C traceparent: "00-" 32 hex "-" 16 hex "-" 2 hex. */
#define SONDE_TRACEPARENT_LENGTH 55

struct sonde_op {
	__u8 code;
	__u8 reg;
	__u16 out;                   /* offset in the record's data area */
	__u16 len;
	__u8 capture;                /* reads: index of the capture, marked in `captured` */
	__u8 pad;
	__s64 imm;
};

/* A probe's trace-context program (START_SPAN, EXTRACT, INJECT). */
struct sonde_context_program {
	__u8 op_count;
	__u8 action;                 /* enum sonde_context_action; 0: none */
	__u8 carrier;                /* EXTRACT: enum sonde_header_carrier */
	__u8 sets_carrier;           /* EXTRACT on a client span: its own context waits in
	                              * `injections` under the headers (a map pointer). Set only
	                              * when outgoing propagation is on and an INJECT probe writes it */
	__u16 element_size;          /* EXTRACT: a map element's or a slice field's size */
	__u8 traceparent_length;     /* the traceparent header's name, in literal slot 0 */
	__u8 tracestate_length;      /* EXTRACT: the tracestate header's, in slot 1; 0: not looked for */
	__u16 trace_state_out;       /* EXTRACT: where a remote parent's tracestate goes in the record, */
	__u16 trace_state_length;    /* at most this many bytes, */
	__u8 trace_state_capture;    /* with this capture bit */
	__u8 reserved;
	__u16 buffer_offset;         /* INJECT: the writer's []byte, */
	__u16 used_offset;           /* and its count of bytes used */
	__u16 reserved2;
	struct sonde_op ops[SONDE_MAX_CONTEXT_OPS];
	__u8 literals[SONDE_LITERAL_SLOTS * SONDE_LITERAL_SLOT_SIZE];
};

struct sonde_probe_config {
	__u32 role;
	__u32 span_slot;             /* shared by a probe's entry and return sites */
	__u32 key_mode;
	__u32 op_count;
	__u64 skip_flags_mask;       /* skip the hit when (eflags & mask) != 0: a JBE into morestack */
	__u64 site_address;          /* link-time address of the site, to derive the PIE load bias */
	__u32 object_register;       /* END_OBJECT_SPAN: the register holding the object whose span to
	                              * end; HANDOFF: the register holding the new goroutine;
	                              * INJECT: the register holding the carrier */
	__u16 prefetch_length;       /* START_SPAN: read this many bytes at register prefetch_register */
	__u8 prefetch_register;      /* in one go before the programs run; their reads inside that
	                              * block come from the copy */
	__u8 at_return;              /* END_SPAN: enum sonde_return_site */
	__u64 sampling_threshold;    /* START_SPAN: a root is recorded when its trace id's low 64
	                              * bits, shifted right by one, are below it, as OpenTelemetry's
	                              * TraceIdRatioBased compares them; SONDE_SAMPLE_ALL records
	                              * every trace, 0 none. Per config, so per service. */
	__u8 guard;                  /* enum sonde_guard: the site acts only when register */
	__u8 guard_register;         /* guard_register (DWARF numbering) passes it */
	__u16 object_prefetch_offset; /* START_SPAN with a prefetch: also read object_prefetch_length */
	__u16 object_prefetch_length; /* bytes at the pointer this far into the prefetched block */
	__u8 reserved[2];
	struct sonde_op ops[SONDE_MAX_OPS];
	struct sonde_context_program context;
};

/* One span, from entry to return. The ring buffer gets it from trace_id_high,
 * the first field user space reads, to the end of its last capture
 * (data_length): the probes' own state comes first and stays in the kernel,
 * 72 bytes a span (the demo front's records: 537 -> 465 bytes on average), in
 * the same cache lines as the fields the probes share with user space. */
struct sonde_span_record {
	/* The probes' own state. */
	__u64 load_bias;
	__u64 parent_owner;          /* the parent span's call owner and probe, to */
	__u32 parent_slot;           /* make it current again when this span ends */
	__u32 nested_calls;          /* the outermost call of a probe on a goroutine/thread: how many
	                              * calls of the same probe are open inside it (their keys have
	                              * levels 1...nested_calls; see SONDE_NESTING_SHIFT) */
	__u64 stack_depth;           /* bytes below the top of the stack at entry: a later
	                              * entry on the same goroutine/thread at this depth or
	                              * less means this call unwound without returning */
	__u64 carrier;               /* the span's trace context waits in `injections` under it */
	__u64 saved[SONDE_SAVED_SLOTS];
	/* What the ring buffer carries. */
	__u64 trace_id_high;
	__u64 trace_id_low;
	__u64 span_id;               /* in `calls`, also the record's owner: see SONDE_SPAN_CLAIMED */
	__u64 parent_span_id;
	__u64 start_ns;              /* CLOCK_MONOTONIC */
	__u64 end_ns;
	__u64 key;                   /* goroutine or thread */
	__u32 tgid;
	__u32 span_slot;
	__u32 failed_reads;          /* fetch ops whose memory read failed */
	__u16 stopped;               /* an EXPECT_ADDRESS did not match: later captures absent */
	__u16 data_length;           /* bytes of data[] up to the end of the last capture written:
	                              * the ring buffer record ends there */
	__u32 captured;              /* bit i set: capture i was written */
	__u32 context_flags;         /* SONDE_PARENT_REMOTE */
	/* Strings are stored as a u16 length then the bytes. The slack after the
	 * data area lets the verifier accept a bounded copy at any masked offset. */
	__u8 data[SONDE_DATA_SIZE + SONDE_MAX_STRING + 2];
};

/* Set in a record's `context_flags` when its parent came from an incoming
 * traceparent (another process's span). */
#define SONDE_PARENT_REMOTE 1u

/* A record of `calls` outlives its call: the next call of the same probe on
 * the same goroutine/thread reuses it in place, so a call costs no insert and
 * no delete, each of which locks a bucket. Its span_id says who owns it, and
 * changes only by compare-and-swap: a call's id while the call is open, 0 once
 * its span was emitted (free for the next call), SONDE_SPAN_CLAIMED while
 * Engine's claim program takes it out (a call given up, or a free record
 * left idle). Whoever swaps the id of an open call away ends it: the probe
 * that emits its span, or Engine, which counts it lost; never both. Records
 * of nested calls (levels above 0) are inserted and deleted per call.
 * An entry of `active_contexts` is reused the same way: span_id 0 when no
 * context is active on its goroutine/thread, SONDE_SPAN_CLAIMED while Engine
 * removes it (stale, or left empty). */
#define SONDE_SPAN_CLAIMED 0xffffffffffffffffULL

/* Whether a span id read from an entry of `calls` or `active_contexts` is an
 * owner's: an open call's, or a context's still active. */
static inline int sonde_span_id_held(__u64 span_id)
{
	return span_id != 0 && span_id != SONDE_SPAN_CLAIMED;
}

/* What Engine tells the BPF program after loading it, in `limits` (one
 * entry, key 0). */
struct sonde_limits {
	/* The record of an ended call stays for its goroutine/thread's next call
	 * while `calls` holds at most this many records; past it, the record is
	 * deleted at the call's end, and the room left to calls in flight
	 * (Engine sets half the map, so that records of goroutines that went
	 * quiet never keep a new goroutine's call out of more than half of it). */
	__u32 kept_call_records;
	/* The same for the entry of a goroutine/thread whose trace context
	 * ended, in `active_contexts`: emptied for the next one while the map
	 * holds at most this many entries, deleted past it. */
	__u32 kept_context_entries;
};

/* Which map a struct sonde_claim names an entry of. */
enum sonde_claim_map {
	SONDE_CLAIM_CALLS = 0,
	SONDE_CLAIM_CONTEXTS = 1,
};

/* Key of `calls`, `object_spans` and `injections`: the call's goroutine,
 * thread or object (or carrier), its process, and the probe (span slot). In
 * `calls`, a call of a probe made inside another call of the same probe on
 * the same goroutine/thread (recursion, re-entry) adds its nesting level,
 * shifted by SONDE_NESTING_SHIFT, to the span slot; trace contexts name a
 * call by that slot too. */
struct sonde_call_key {
	__u64 key;
	__u32 tgid;
	__u32 span_slot;
};

/* The context Engine runs sonde_claim_entry with: the entry under `key` of
 * `calls`, or of `active_contexts` (its key and tgid; span_slot 0), is
 * claimed when its span_id is still `span_id` (0: an entry free for the next
 * call or context), and then deleted. The program returns 1 when it claimed it. */
struct sonde_claim {
	struct sonde_call_key key;
	__u64 span_id;
	__u32 map;                   /* enum sonde_claim_map */
	__u32 pad;
};

/* Key of `active_contexts`: a goroutine or thread of a process. */
struct sonde_context_key {
	__u64 key;
	__u32 tgid;
	__u32 pad;
};

/* Set in a context's `flags` for a root the sampler did not record: the
 * trace's probes return at once, and `span_id` is only a nonce telling this
 * root from a later one on the same goroutine/thread. */
#define SONDE_CONTEXT_UNSAMPLED 1u
/* Set in a context's `flags` for a remote parent (an incoming traceparent an
 * EXTRACT probe found): `span_id` is that parent's. It holds on its
 * goroutine/thread while the extracting call runs (`stack_depth`), and on a
 * goroutine started meanwhile until that goroutine's first span ends. */
#define SONDE_CONTEXT_REMOTE 2u

/* The span that new spans on a goroutine/thread become children of, and the
 * call that opened it (owner, probe), to tell whether it is still open. */
struct sonde_trace_context {
	__u64 trace_id_high;
	__u64 trace_id_low;
	__u64 span_id;
	__u64 owner;
	__u32 span_slot;
	__u32 flags;
	__u64 stack_depth;           /* unsampled roots: their call's depth, as in the span record */
	__u64 trace_state_data;      /* remote parents: the incoming tracestate's bytes (the */
	__u64 trace_state_length;    /* request keeps them alive), or 0 */
};

/* A probe config's sampling_threshold that records every trace. */
#define SONDE_SAMPLE_ALL (1ull << 63)

/* A client span's trace context waiting to be written into its request. */
struct sonde_injection {
	__u64 trace_id_high;
	__u64 trace_id_low;
	__u64 span_id;
	__u32 written;               /* times an INJECT probe wrote it (a request sent again) */
	__u32 flags;                 /* W3C trace flags: 1 = sampled */
};

/* Counters user space reports; each is a per-CPU slot of the `counters` map,
 * added to atomically: a uprobe program can be preempted (Linux >= 6.0 runs it
 * with migration disabled, not preemption), so a plain += could lose counts. */
enum sonde_counter {
	SONDE_COUNTER_RING_FULL = 0,       /* spans lost: ring buffer full */
	SONDE_COUNTER_ORPHAN_RETURN = 1,   /* returns without a recorded call: attached mid-call, the
	                                    * call not recorded (map full) or already given up */
	SONDE_COUNTER_STATE_FULL = 2,      /* entries not recorded: `calls` full */
	SONDE_COUNTER_MISSING_CONFIG = 3,  /* hits with an unknown cookie */
	SONDE_COUNTER_OBJECT_SPAN_REPLACED = 4, /* spans kept open under an object that a new span
	                                    * for the same object replaced: they never ended */
	SONDE_COUNTER_OBJECT_SPANS_FULL = 5, /* spans that could not stay open: object_spans full */
	SONDE_COUNTER_CALL_UNWOUND = 6,    /* calls whose goroutine/thread unwound past them without
	                                    * returning (panic, Goexit): never emitted */
	SONDE_COUNTER_CALL_NESTED = 7,     /* calls nested in calls of the same probe on their
	                                    * goroutine/thread deeper than SONDE_MAX_NESTED_CALLS
	                                    * (recursion): never recorded */
	SONDE_COUNTER_CONTEXTS_FULL = 8,   /* trace contexts not kept: `active_contexts` full, so
	                                    * later spans there start new traces */
	SONDE_COUNTER_SAMPLED_OUT = 9,     /* root spans the sampler did not record; nothing of
	                                    * their trace is emitted */
	SONDE_COUNTER_BAD_TRACEPARENT = 10, /* incoming traceparent values that were malformed: ignored */
	SONDE_COUNTER_PARENT_NOT_SAMPLED = 11, /* spans not recorded: their remote parent was not sampled */
	SONDE_COUNTER_INJECT_NO_ROOM = 12, /* trace contexts not written: the request's buffer was too full */
	SONDE_COUNTER_NOT_INJECTED = 13,   /* client spans whose trace context was never written (e.g. an
	                                    * HTTP/2 request, or one that failed before it was sent) */
	SONDE_COUNTER_INJECTIONS_FULL = 14,/* client spans whose context could not wait: `injections` full */
	SONDE_COUNTER_MAP_TOO_LARGE = 15,  /* header maps too large to search whole: traceparent may be missed */
	SONDE_COUNTER_PROCESS_EVENTS_LOST = 16, /* process starts or ends not reported: `process_events`
	                                    * full; user space then scans /proc whole */
	SONDE_COUNTER_COUNT = 17,
};

/* What happened to a process (a thread group, by its tgid). */
enum sonde_process_event_kind {
	SONDE_PROCESS_EXEC = 1,            /* it ran execve: a new program, maybe one a service claims */
	SONDE_PROCESS_EXIT = 2,            /* its main thread exited: the process ends (or, rarely,
	                                    * runs on in its other threads) */
};

struct sonde_process_event {
	__u32 kind;                  /* enum sonde_process_event_kind */
	__u32 pid;                   /* the tgid, as /proc names the process */
};

#endif
