/* pytest-tinyml QEMU TCG plugin: counts executed Thumb instructions by timing class.
 *
 * Written against QEMU 7.2's plugin API (version 1). Debian ships no qemu-plugin.h, so the few types and
 * functions used here are declared below; they must match the API of the QEMU that loads the plugin.
 *
 * Arguments (-plugin insn_classes.so,KEY=VALUE,...):
 *   out=PATH            where the counts are written at exit (required)
 *   flash=LO:HI         hex address range treated as the board's flash (data reads from it are counted)
 *   dline=N dlines=M dways=W  the flash read buffer/cache: M lines of N bytes in M/W sets of W ways, LRU
 *                       (default: one 16-byte line)
 *
 * Markers: the firmware executes one of these no-op moves, which compilers never emit:
 *   mov r9, r9   (0x46c9) inference begins       mov r10, r10 (0x46d2) operator begins
 *   mov r11, r11 (0x46db) operator ends          mov ip, ip   (0x46e4) inference ends
 * Counting happens only between "inference begins" and "inference ends". Operators are numbered in the
 * order they begin within each inference; their counts are summed over all inferences.
 *
 * Output: text lines "classes NAME..." then "total C..." "overhead C..." and "op K C..." rows of
 * counts in the class order, plus "inferences N" and "markers N". */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the part of QEMU 7.2's qemu-plugin.h this plugin uses ---- */
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* only passed through */
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef uint32_t qemu_plugin_meminfo_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info, uint64_t vaddr,
                                          void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *insn);
bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

/* ---- classes ---- */
enum {
    C_ALU,        /* data processing, moves, compares, shifts, single-cycle extends */
    C_LOAD,       /* LDR/LDRB/LDRH/LDRSB/LDRSH/LDREX (one register) */
    C_STORE,      /* STR/STRB/STRH/STREX */
    C_LDST_PIPE,  /* a load/store single directly after a load single (counted in addition) */
    C_LOAD_DUAL,  /* LDRD */
    C_STORE_DUAL, /* STRD */
    C_LDM,        /* LDM/POP (instructions) */
    C_LDM_REGS,   /* registers transferred by LDM/POP */
    C_STM,        /* STM/PUSH */
    C_STM_REGS,
    C_MUL,        /* MUL/MLA/MLS (32-bit result) */
    C_MUL_LONG,   /* UMULL/SMULL/UMLAL/SMLAL (64-bit result) */
    C_DSP_MAC,    /* SMLAD/SMLABB/SMULBB/SMUAD/SMMLA/SMLALD... (DSP extension multiplies) */
    C_DSP_SIMD,   /* SXTB16/UXTB16/SXTAB16/PKHBT/SSAT/USAT/QADD/SADD16/SEL... (pack, saturate, SIMD) */
    C_DIV,        /* SDIV/UDIV */
    C_BRANCH_TAKEN,
    C_BRANCH_NOT_TAKEN,
    C_IT,
    C_FP,         /* VFP arithmetic and moves */
    C_FP_LDST,    /* VLDR/VSTR (single transfers) */
    C_FP_LDM_REGS, /* registers moved by VLDM/VSTM/VPUSH/VPOP */
    C_MVE,        /* Helium (M-profile vector extension) instructions */
    C_FLASH_READS, /* data reads from the flash range */
    C_FLASH_MISSES, /* data reads from flash that missed the modelled read buffer/cache */
    C_MARKER,     /* the marker moves themselves (excluded from every other class) */
    N_CLASSES
};
static const char *class_names[N_CLASSES] = {
    "alu", "load", "store", "ldst_pipelined", "load_dual", "store_dual", "ldm", "ldm_regs", "stm", "stm_regs",
    "mul", "mul_long", "dsp_mac", "dsp_simd", "div", "branch_taken", "branch_not_taken", "it", "fp", "fp_ldst",
    "fp_ldm_regs", "mve", "flash_reads", "flash_misses", "marker",
};

enum { M_NONE = -1, M_INFER_BEGIN = 0, M_OP_BEGIN = 1, M_OP_END = 2, M_INFER_END = 3 };

#define MAX_OPS 4096
typedef struct { uint64_t c[N_CLASSES]; } counts_t;

static counts_t total, overhead;
static counts_t *ops; /* MAX_OPS */
static int n_ops_seen, cur_op = -1;
static bool active;
static uint64_t inferences, markers_seen, op_overflow;
static char *out_path;
static uint64_t flash_lo, flash_hi;
#define MAX_LINES 4096
static uint32_t dline = 16, dlines = 1, dways = 0;
static uint64_t cache_tags[MAX_LINES];
static uint64_t cache_age[MAX_LINES];
static uint64_t cache_clock;

/* the previous executed TB ended with a branch whose fall-through address is pending_ft */
static bool pending_branch;
static uint64_t pending_ft;

typedef struct {
    int marker;            /* marker executed at the start of this part, or M_NONE */
    uint32_t c[C_MARKER + 1];
} part_t;

typedef struct {
    uint32_t n_parts;
    bool ends_with_branch;
    uint64_t vaddr;
    uint64_t fallthrough;
    part_t parts[];
} tbinfo_t;

static counts_t *current(void)
{
    if (!active) return NULL;
    if (cur_op >= 0 && cur_op < MAX_OPS) return &ops[cur_op];
    return &overhead;
}

static void add(counts_t *dst, int cls, uint64_t n)
{
    if (dst) dst->c[cls] += n;
    if (dst && active) total.c[cls] += n;
}

static void write_counts(void);

static void on_marker(int kind)
{
    markers_seen++;
    switch (kind) {
    case M_INFER_BEGIN:
        active = true;
        inferences++;
        cur_op = -1;
        n_ops_seen = 0;
        break;
    case M_OP_BEGIN:
        if (!active) break;
        if (n_ops_seen < MAX_OPS) {
            cur_op = n_ops_seen++;
        } else {
            op_overflow++;
            cur_op = -1;
        }
        break;
    case M_OP_END:
        cur_op = -1;
        break;
    case M_INFER_END:
        active = false;
        cur_op = -1;
        /* written after every inference: the emulator may be stopped by a signal once the firmware has
         * reported its result, before the exit callbacks run */
        write_counts();
        break;
    }
}

static void tb_exec(unsigned int vcpu, void *udata)
{
    tbinfo_t *tb = udata;
    uint32_t p;
    int k;
    (void)vcpu;
    if (pending_branch) {
        /* the previous TB ended with a branch: taken unless this TB starts at its fall-through address */
        add(current(), tb->vaddr == pending_ft ? C_BRANCH_NOT_TAKEN : C_BRANCH_TAKEN, 1);
        pending_branch = false;
    }
    for (p = 0; p < tb->n_parts; ++p) {
        counts_t *cur;
        if (tb->parts[p].marker != M_NONE) on_marker(tb->parts[p].marker);
        cur = current();
        if (!cur) continue;
        for (k = 0; k <= C_MARKER; ++k)
            if (tb->parts[p].c[k]) add(cur, k, tb->parts[p].c[k]);
    }
    if (tb->ends_with_branch) {
        pending_branch = true;
        pending_ft = tb->fallthrough;
    }
}

static void mem_read(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
    counts_t *cur;
    uint64_t tag;
    uint32_t i, victim = 0;
    (void)vcpu;
    (void)udata;
    if (!active || qemu_plugin_mem_is_store(info) || vaddr < flash_lo || vaddr >= flash_hi) return;
    cur = current();
    add(cur, C_FLASH_READS, 1);
    tag = vaddr / dline;
    cache_clock++;
    {
        uint32_t sets = dlines / dways, base = (uint32_t)(tag % sets) * dways;
        victim = base;
        for (i = base; i < base + dways; ++i) {
            if (cache_tags[i] == tag + 1) {
                cache_age[i] = cache_clock;
                return;
            }
            if (cache_age[i] < cache_age[victim]) victim = i;
        }
    }
    cache_tags[victim] = tag + 1;
    cache_age[victim] = cache_clock;
    add(cur, C_FLASH_MISSES, 1);
}

/* ---- classification ---- */
static int count_regs(const char *s)
{
    /* registers in a "{r4, r5, r8-r11, lr}" list */
    const char *open = strchr(s, '{'), *close = open ? strchr(open, '}') : NULL;
    int n = 0;
    const char *p;
    if (!open || !close) return 1;
    p = open + 1;
    while (p < close) {
        const char *comma = memchr(p, ',', (size_t)(close - p));
        const char *end = comma ? comma : close;
        const char *dash = memchr(p, '-', (size_t)(end - p));
        if (dash) {
            /* rA-rB, sA-sB or dA-dB */
            const char *a = p, *b = dash + 1;
            while (a < dash && (*a < '0' || *a > '9')) a++;
            while (b < end && (*b < '0' || *b > '9')) b++;
            n += atoi(b) - atoi(a) + 1;
        } else {
            n += 1;
        }
        p = end + 1;
    }
    return n > 0 ? n : 1;
}

static bool starts(const char *m, const char *prefix) { return strncmp(m, prefix, strlen(prefix)) == 0; }

static bool any_prefix(const char *m, const char *const *list)
{
    for (; *list; ++list)
        if (starts(m, *list)) return true;
    return false;
}

static const char *const DSP_MAC[] = {"smla", "smlsd", "smlsld", "smul", "smua", "smus", "smmla", "smmls",
                                      "smmul", "smlal", "umaal", NULL};
static const char *const DSP_SIMD[] = {"sxtb16", "uxtb16", "sxtab16", "uxtab16", "pkhbt", "pkhtb", "ssat", "usat",
                                       "qadd", "qsub", "qdadd", "qdsub", "qasx", "qsax", "sadd16", "sadd8",
                                       "ssub16", "ssub8", "uadd16", "uadd8", "usub16", "usub8", "shadd", "shsub",
                                       "uhadd", "uhsub", "uqadd", "uqsub", "sasx", "ssax", "uasx", "usax", "sel",
                                       "usad", "shasx", "shsax", "uhasx", "uhsax", "uqasx", "uqsax", NULL};
static const char *const MVE[] = {"vldrb", "vldrh", "vldrw", "vldrd", "vstrb", "vstrh", "vstrw", "vstrd", "vctp",
                                  "vpst", "vpt", "vmlav", "vmladav", "vmlaldav", "vrmlaldavh", "vaddv", "vaddlv",
                                  "dls", "wls", "le", "letp", "dlstp", "wlstp", "lctp", NULL};

/* True when an operand is a Helium vector register (q0..q7): QEMU 7.2's disassembler prints many MVE
 * instructions with Neon-style mnemonics (vdup.32 q7, r3; vadd.i32 q0, q1, q2). */
static bool has_qreg(const char *ops)
{
    for (const char *p = ops; *p; ++p) {
        if (*p == 'q' && p[1] >= '0' && p[1] <= '7' && (p == ops || p[-1] == ' ' || p[-1] == ',' || p[-1] == '{'))
            return true;
    }
    return false;
}

/* Sets *cls (and *regs for multiple transfers); returns true when the instruction writes the PC. */
static bool classify(const char *text, int *cls, int *regs)
{
    char m[32];
    size_t i = 0;
    const char *ops_text;
    bool writes_pc = false;
    while (*text == ' ' || *text == '\t') text++;
    while (text[i] && text[i] != ' ' && text[i] != '\t' && i < sizeof(m) - 1) {
        m[i] = text[i];
        i++;
    }
    m[i] = 0;
    ops_text = text + i;
    /* strip width qualifiers */
    {
        char *dot = strchr(m, '.');
        if (dot && (strcmp(dot, ".w") == 0 || strcmp(dot, ".n") == 0)) *dot = 0;
    }
    *regs = 0;
    if (strstr(ops_text, "pc") && (starts(m, "pop") || starts(m, "ldm"))) writes_pc = strstr(ops_text, "pc}") || strstr(ops_text, ", pc") || strstr(ops_text, "{pc");
    if (starts(m, "it") && strlen(m) <= 5) { *cls = C_IT; return false; }
    if (strcmp(m, "b") == 0 || (m[0] == 'b' && strlen(m) == 3 && strcmp(m, "bic") != 0) || starts(m, "bl") ||
        starts(m, "bx") || starts(m, "cbz") || starts(m, "cbnz") || starts(m, "tbb") || starts(m, "tbh") ||
        strcmp(m, "b.w") == 0) {
        if (strcmp(m, "bic") != 0 && strcmp(m, "bics") != 0 && strcmp(m, "bfi") != 0 && strcmp(m, "bfc") != 0) {
            *cls = C_BRANCH_TAKEN; /* decided at run time */
            return true;
        }
    }
    if (starts(m, "pop") || starts(m, "ldm")) { *cls = C_LDM; *regs = count_regs(ops_text); return writes_pc; }
    if (starts(m, "push") || starts(m, "stm")) { *cls = C_STM; *regs = count_regs(ops_text); return false; }
    if (starts(m, "vpush") || starts(m, "vpop") || starts(m, "vldm") || starts(m, "vstm")) {
        *cls = C_FP_LDM_REGS; *regs = count_regs(ops_text); return false;
    }
    if (any_prefix(m, MVE) && !starts(m, "ldr")) { *cls = C_MVE; return false; }
    /* QEMU 7.2 shows MVE's VLDR/VSTR (in the coprocessor encoding space) as ldc/stc, which compilers never
     * emit for Cortex-M otherwise; and vector operations with q registers under Neon-style mnemonics */
    if (starts(m, "ldc") || starts(m, "stc") || (m[0] == 'v' && has_qreg(ops_text))) { *cls = C_MVE; return false; }
    if (starts(m, "vldr") || starts(m, "vstr")) { *cls = C_FP_LDST; return false; }
    if (m[0] == 'v') { *cls = C_FP; return false; }
    if (starts(m, "ldrd")) { *cls = C_LOAD_DUAL; return false; }
    if (starts(m, "strd")) { *cls = C_STORE_DUAL; return false; }
    if (starts(m, "ldr") || starts(m, "ldaex") || starts(m, "lda")) {
        *cls = C_LOAD;
        /* ldr pc, [...] */
        {
            const char *p = ops_text;
            while (*p == ' ' || *p == '\t') p++;
            if (starts(p, "pc")) return true;
        }
        return false;
    }
    if (starts(m, "str") || starts(m, "stl")) { *cls = C_STORE; return false; }
    if (starts(m, "sdiv") || starts(m, "udiv")) { *cls = C_DIV; return false; }
    if (starts(m, "umull") || starts(m, "smull") || starts(m, "umlal") || strcmp(m, "smlal") == 0) {
        *cls = C_MUL_LONG; return false;
    }
    if (starts(m, "mul") || starts(m, "mla") || starts(m, "mls")) { *cls = C_MUL; return false; }
    if (any_prefix(m, DSP_SIMD)) { *cls = C_DSP_SIMD; return false; }
    if (any_prefix(m, DSP_MAC)) { *cls = C_DSP_MAC; return false; }
    *cls = C_ALU;
    /* data processing with the PC as destination (mov pc, lr; add pc, ...) */
    {
        const char *p = ops_text;
        while (*p == ' ' || *p == '\t') p++;
        if (starts(p, "pc,") || starts(p, "pc ")) return true;
    }
    return false;
}

static int marker_of(const struct qemu_plugin_insn *insn)
{
    const uint8_t *d = qemu_plugin_insn_data(insn);
    uint16_t hw;
    if (qemu_plugin_insn_size(insn) != 2) return M_NONE;
    hw = (uint16_t)(d[0] | (d[1] << 8));
    switch (hw) {
    case 0x46c9: return M_INFER_BEGIN;
    case 0x46d2: return M_OP_BEGIN;
    case 0x46db: return M_OP_END;
    case 0x46e4: return M_INFER_END;
    default: return M_NONE;
    }
}

/* Cortex-M3/M4 TRM: a load or store single directly after a load single pipelines its address phase;
 * nothing pipelines after a store. */
static bool pipelines_after(int prev, int cls) { return prev == C_LOAD && (cls == C_LOAD || cls == C_STORE); }

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb), i;
    uint32_t parts = 1;
    tbinfo_t *info;
    part_t *cur;
    int prev_cls = -1;
    (void)id;
    for (i = 0; i < n; ++i)
        if (marker_of(qemu_plugin_tb_get_insn(tb, i)) != M_NONE) parts++;
    info = calloc(1, sizeof(tbinfo_t) + parts * sizeof(part_t));
    if (!info) return;
    info->n_parts = 1;
    info->vaddr = qemu_plugin_tb_vaddr(tb);
    info->parts[0].marker = M_NONE;
    cur = &info->parts[0];
    for (i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        int mk = marker_of(insn), cls = C_ALU, regs = 0;
        bool pc;
        if (mk != M_NONE) {
            cur = &info->parts[info->n_parts++];
            cur->marker = mk;
            cur->c[C_MARKER]++;
            prev_cls = -1;
            continue;
        }
        {
            char *text = qemu_plugin_insn_disas(insn);
            pc = classify(text ? text : "", &cls, &regs);
            free(text);
        }
        if (pc) {
            if (i == n - 1) {
                info->ends_with_branch = true;
                info->fallthrough = qemu_plugin_insn_vaddr(insn) + qemu_plugin_insn_size(insn);
            }
            if (cls == C_BRANCH_TAKEN) cls = -1; /* counted when the next TB starts */
        }
        if (cls >= 0) cur->c[cls]++;
        if (cls == C_LDM) cur->c[C_LDM_REGS] += (uint32_t)regs;
        if (cls == C_STM) cur->c[C_STM_REGS] += (uint32_t)regs;
        if (cls == C_FP_LDM_REGS) cur->c[C_FP_LDM_REGS] += (uint32_t)regs - 1; /* one already counted */
        if (pipelines_after(prev_cls, cls)) cur->c[C_LDST_PIPE]++;
        prev_cls = cls;
        if (flash_hi > flash_lo && (cls == C_LOAD || cls == C_LOAD_DUAL || cls == C_LDM || cls == C_FP_LDST ||
                                    cls == C_FP_LDM_REGS || cls == C_MVE))
            /* QEMU 7.2 applies the R/W filter inconsistently (R alone reports the stores):
             * ask for both and keep reads in mem_read via qemu_plugin_mem_is_store */
            qemu_plugin_register_vcpu_mem_cb(insn, mem_read, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, NULL);
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, info);
}

static void write_row(FILE *f, const char *label, const counts_t *c)
{
    int k;
    fputs(label, f);
    for (k = 0; k < N_CLASSES; ++k) fprintf(f, " %llu", (unsigned long long)c->c[k]);
    fputc('\n', f);
}

static void write_counts(void)
{
    /* written to a temporary file and renamed, so a reader never sees a partial file */
    char tmp[4096];
    FILE *f;
    int k;
    if (snprintf(tmp, sizeof tmp, "%s.part", out_path) >= (int)sizeof tmp) return;
    f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "version 1\ninferences %llu\nmarkers %llu\nop_overflow %llu\nclasses", (unsigned long long)inferences,
            (unsigned long long)markers_seen, (unsigned long long)op_overflow);
    for (k = 0; k < N_CLASSES; ++k) fprintf(f, " %s", class_names[k]);
    fputc('\n', f);
    write_row(f, "total", &total);
    write_row(f, "overhead", &overhead);
    for (k = 0; k < n_ops_seen && k < MAX_OPS; ++k) {
        char label[32];
        snprintf(label, sizeof label, "op %d", k);
        write_row(f, label, &ops[k]);
    }
    fputs("end\n", f);
    if (fclose(f) == 0) rename(tmp, out_path);
}

static void at_exit(qemu_plugin_id_t id, void *udata)
{
    (void)id;
    (void)udata;
    write_counts();
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    int i;
    (void)info;
    for (i = 0; i < argc; ++i) {
        const char *a = argv[i];
        if (starts(a, "out=")) {
            out_path = strdup(a + 4);
        } else if (starts(a, "flash=")) {
            char *end;
            flash_lo = strtoull(a + 6, &end, 16);
            flash_hi = (*end == ':') ? strtoull(end + 1, NULL, 16) : 0;
        } else if (starts(a, "dline=")) {
            dline = (uint32_t)strtoul(a + 6, NULL, 10);
        } else if (starts(a, "dlines=")) {
            dlines = (uint32_t)strtoul(a + 7, NULL, 10);
        } else if (starts(a, "dways=")) {
            dways = (uint32_t)strtoul(a + 6, NULL, 10);
        } else {
            fprintf(stderr, "insn_classes: unknown argument %s\n", a);
            return -1;
        }
    }
    if (dways == 0) dways = dlines; /* fully associative */
    if (!out_path || dline == 0 || dline > 4096 || dlines == 0 || dlines > MAX_LINES || dways > dlines ||
        dlines % dways != 0) {
        fprintf(stderr, "insn_classes: needs out=PATH; dline 1..4096, dlines 1..%d, dways dividing dlines\n",
                MAX_LINES);
        return -1;
    }
    ops = calloc(MAX_OPS, sizeof(counts_t));
    if (!ops) return -1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
