/* The Metal simulator (sim.h): compiling emitted MSL as C++ and running its grids on fibers. */
#define _GNU_SOURCE
#include "sim.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "../../ir/sbuf.h"

extern char **environ;
extern const char bn_sim_stdlib[]; /* metal/sim/metal_stdlib, embedded by CMake */

typedef struct {
  void (*barrier)(void);
  void (*simd_sync)(void);
  void *(*simd_slots)(void);
  unsigned (*lane)(void);
} bn_sim_rt; /* as in metal_stdlib */

typedef void (*sim_entry)(void *const *buffers, void *tg, const uint32_t *ids);

enum { STACK = 32 << 10, GUARD = 64, SLOT = 20 }; /* a fiber's stack; threadgroup guard; simd bytes a lane */

typedef struct fiber fiber;

struct bn_sim_lib {
  void *so;
  int n;
  sim_entry *entry;
  char **names;
  int cached, stored;
  double seconds;
  /* a dispatch's room, kept for the next: fibers, their stacks, simdgroup slots, threadgroup block */
  uint32_t room_threads, room_tg;
  fiber *f;
  int *queue;
  uint8_t *stacks, *slots, *tg;
};

/* ---- the wrapper: the MSL, then one C entry per kernel ---- */

char *bn_sim_wrapper(const char *msl, const bn_sim_kernel *k, int n) {
  bn_sbuf s = {0};
  /* the one spelling C++ cannot take: the attribute [[threadgroup(i)]], whose name the address
   * space macro would erase, is renamed (to an attribute C++ ignores) */
  const char *at = msl, *hit;
  while ((hit = strstr(at, "[[threadgroup("))) {
    bn_sbuf_put(&s, "%.*s[[bn_sim_threadgroup(", (int)(hit - at), at);
    at = hit + strlen("[[threadgroup(");
  }
  bn_sbuf_put(&s, "%s\n", at);
  bn_sbuf_put(&s, "struct bn_ptr { void *p; template <class T> operator T *() const { return (T *)p; } };\n"
                     "const bn_sim_rt *bn_sim;\n"
                     "extern \"C\" void bn_sim_set(const bn_sim_rt *r) { bn_sim = r; }\n");
  for (int i = 0; i < n; i++) {
    bn_sbuf_put(&s, "extern \"C\" void bn_simk_%d(void *const *b, void *tg, const unsigned *id) {\n  %s(*(bn_step *)b[0]",
                   i, k[i].name);
    for (int b = 1; b < k[i].n_buffers; b++) bn_sbuf_put(&s, ", bn_ptr{b[%d]}", b);
    bn_sbuf_put(&s, "%s, metal::uint3{id[0], id[1], 0}, id[2], id[3], id[4]);\n}\n", k[i].tg_block ? ", bn_ptr{tg}" : "");
  }
  if (s.oom) free(s.buf), s.buf = NULL;
  return s.buf;
}

/* ---- compiling and loading ---- */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  int ok = fwrite(data, 1, n, f) == n;
  return (fclose(f) == 0 && ok) ? 0 : -1;
}

static void *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, len = 0, r;
  char *buf = malloc(cap + 1);
  while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0)
    if ((len += r) == cap) {
      char *p = realloc(buf, (cap *= 2) + 1);
      if (!p) free(buf);
      buf = p;
    }
  fclose(f);
  if (buf) buf[len] = 0; /* text callers read it as a string */
  *n = len;
  return buf;
}

#if defined(__x86_64__)
#include <cpuid.h>
static int has_f16c(void) {
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
}
#define F16C (has_f16c() ? "-mf16c" : "-mno-f16c") /* half conversions in one instruction */
#else
#define F16C "-fsigned-char"
#endif

/* Runs the compiler on dir/k.cpp into dir/k.so; its messages go to dir/log. */
static bn_status run_cxx(const char *cxx, const char *dir, bn_error *err) {
  char src[4200], out[4200], inc[4200], log[4200];
  snprintf(src, sizeof src, "%s/k.cpp", dir), snprintf(out, sizeof out, "%s/k.so", dir);
  snprintf(inc, sizeof inc, "-I%s", dir), snprintf(log, sizeof log, "%s/log", dir);
  char *argv[] = {(char *)cxx, "-std=c++17", "-O1", "-fPIC", "-shared", "-fsigned-char", "-ffp-contract=off",
                  "-fno-exceptions", "-w", F16C, inc, "-o", out, src, NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid;
  int rc = posix_spawnp(&pid, cxx, &fa, NULL, argv, environ), status = 0;
  posix_spawn_file_actions_destroy(&fa);
  if (rc) return bn_fail(err, BN_E_IO, "metal-sim: cannot run the C++ compiler '%s': %s", cxx, strerror(rc));
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return BN_OK;
  size_t n = 0;
  char *msg = read_file(log, &n);
  bn_fail(err, BN_E_INVALID, "metal-sim: '%s' could not compile the shaders as C++: %.300s", cxx, msg ? msg : "");
  free(msg);
  return BN_E_INVALID;
}

static void remove_dir(const char *dir) {
  const char *names[] = {"k.cpp", "k.so", "metal_stdlib", "log"};
  char p[4200];
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) snprintf(p, sizeof p, "%s/%s", dir, names[i]), unlink(p);
  rmdir(dir);
}

static bn_status load(bn_sim_lib *lib, const char *so, const bn_sim_kernel *k, int n, bn_error *err) {
  if (!(lib->so = dlopen(so, RTLD_NOW | RTLD_LOCAL)))
    return bn_fail(err, BN_E_IO, "metal-sim: cannot load the compiled shaders: %s", dlerror());
  void (*set)(const bn_sim_rt *) = (void (*)(const bn_sim_rt *))dlsym(lib->so, "bn_sim_set");
  extern const bn_sim_rt bn_sim_runtime;
  if (!set) return bn_fail(err, BN_E_FORMAT, "metal-sim: the compiled shaders lack bn_sim_set");
  set(&bn_sim_runtime);
  for (int i = 0; i < n; i++) {
    char sym[32];
    snprintf(sym, sizeof sym, "bn_simk_%d", i);
    if (!(lib->entry[i] = (sim_entry)dlsym(lib->so, sym)) || !(lib->names[i] = strdup(k[i].name)))
      return bn_fail(err, BN_E_FORMAT, "metal-sim: kernel %s missing from the compiled shaders", k[i].name);
  }
  return BN_OK;
}

bn_status bn_sim_compile(const char *msl, const bn_sim_kernel *k, int n, const bn_sim_opts *opts, bn_sim_lib **out,
                         bn_error *err) {
  *out = NULL;
  const char *cxx = opts && opts->cxx ? opts->cxx : "c++";
  const bn_kcache *cache = opts ? opts->cache : NULL;
  double t0 = now_s();
  bn_sim_lib *lib = calloc(1, sizeof *lib);
  char *src = bn_sim_wrapper(msl, k, n);
  if (!lib || !src || !(lib->entry = calloc((size_t)n + 1, sizeof *lib->entry)) ||
      !(lib->names = calloc((size_t)n + 1, sizeof *lib->names))) {
    free(src), bn_sim_free(lib);
    return bn_fail(err, BN_E_NOMEM, "metal-sim: out of memory");
  }
  lib->n = n;
  XXH3_state_t *h = XXH3_createState();
  XXH3_64bits_reset(h);
  XXH3_64bits_update(h, "metal-sim 1", 11), XXH3_64bits_update(h, cxx, strlen(cxx)), XXH3_64bits_update(h, F16C, strlen(F16C));
  XXH3_64bits_update(h, bn_sim_stdlib, strlen(bn_sim_stdlib)), XXH3_64bits_update(h, src, strlen(src));
  uint64_t key = XXH3_64bits_digest(h);
  XXH3_freeState(h);
  char dir[] = "/tmp/bnc-metal-sim-XXXXXX", p[4200];
  if (!mkdtemp(dir)) {
    free(src), bn_sim_free(lib);
    return bn_fail(err, BN_E_IO, "metal-sim: cannot make a temporary folder: %s", strerror(errno));
  }
  size_t size = 0;
  void *so = cache ? bn_kcache_load(cache, key, &size) : NULL;
  bn_status st = BN_OK;
  snprintf(p, sizeof p, "%s/k.so", dir);
  if (so) {
    lib->cached = 1;
    if (write_file(p, so, size)) st = bn_fail(err, BN_E_IO, "metal-sim: cannot write %s", p);
  } else {
    char hp[4200], cp[4200];
    snprintf(hp, sizeof hp, "%s/metal_stdlib", dir), snprintf(cp, sizeof cp, "%s/k.cpp", dir);
    if (write_file(hp, bn_sim_stdlib, strlen(bn_sim_stdlib)) || write_file(cp, src, strlen(src)))
      st = bn_fail(err, BN_E_IO, "metal-sim: cannot write the shaders to %s", dir);
    else if (!(st = run_cxx(cxx, dir, err)) && cache && (so = read_file(p, &size)))
      lib->stored = !bn_kcache_store(cache, key, so, size);
  }
  if (!st) st = load(lib, p, k, n, err);
  if (st && lib->cached) bn_kcache_drop(cache, key);
  free(so), free(src);
  remove_dir(dir);
  if (st) return bn_sim_free(lib), st;
  lib->seconds = now_s() - t0;
  *out = lib;
  return BN_OK;
}

void bn_sim_lib_info(const bn_sim_lib *lib, int *cached, int *stored, double *seconds) {
  *cached = lib->cached, *stored = lib->stored, *seconds = lib->seconds;
}

void bn_sim_free(bn_sim_lib *lib) {
  if (!lib) return;
  for (int i = 0; lib->names && i < lib->n; i++) free(lib->names[i]);
  if (lib->so) dlclose(lib->so);
  if (lib->stacks) munmap(lib->stacks, (size_t)lib->room_threads * STACK);
  free(lib->entry), free(lib->names), free(lib->f), free(lib->queue), free(lib->slots), free(lib->tg), free(lib);
}

/* ---- fibers ---- */

enum { READY, AT_BARRIER, AT_SIMD, DONE };

struct fiber {
  void *sp;
  int state;
  uint32_t ids[5]; /* group x, y; thread in group, simdgroup, lane */
};

typedef struct {
  fiber *f;
  int *queue;
  int n, cur;
  void *sched_sp;
  sim_entry entry;
  void *const *buffers;
  void *tg;
  uint8_t *slots; /* per simdgroup: 32 lanes x SLOT bytes */
  uint8_t *stacks;
} group;

static __thread group *running;

/* Switches stacks: saves the callee-saved registers on the current stack and its pointer in *save,
 * then continues on to (System V x86-64 and AArch64). The floating-point control state is the
 * same in every fiber (nothing changes it), so it is not switched. */
void bn_sim_switch(void **save, void *to);
#if defined(__x86_64__)
__asm__(".text\n.globl bn_sim_switch\n.type bn_sim_switch,@function\nbn_sim_switch:\n"
        "  push %rbp\n  push %rbx\n  push %r12\n  push %r13\n  push %r14\n  push %r15\n"
        "  mov %rsp, (%rdi)\n  mov %rsi, %rsp\n"
        "  pop %r15\n  pop %r14\n  pop %r13\n  pop %r12\n  pop %rbx\n  pop %rbp\n  ret\n"
        ".size bn_sim_switch, .-bn_sim_switch\n");
#elif defined(__aarch64__)
__asm__(".text\n.globl bn_sim_switch\n.type bn_sim_switch,%function\nbn_sim_switch:\n"
        "  sub sp, sp, #176\n  stp x19, x20, [sp]\n  stp x21, x22, [sp, #16]\n  stp x23, x24, [sp, #32]\n"
        "  stp x25, x26, [sp, #48]\n  stp x27, x28, [sp, #64]\n  stp x29, x30, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n  stp d10, d11, [sp, #112]\n  stp d12, d13, [sp, #128]\n  stp d14, d15, [sp, #144]\n"
        "  mov x2, sp\n  str x2, [x0]\n  mov sp, x1\n"
        "  ldp x19, x20, [sp]\n  ldp x21, x22, [sp, #16]\n  ldp x23, x24, [sp, #32]\n"
        "  ldp x25, x26, [sp, #48]\n  ldp x27, x28, [sp, #64]\n  ldp x29, x30, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n  ldp d10, d11, [sp, #112]\n  ldp d12, d13, [sp, #128]\n  ldp d14, d15, [sp, #144]\n"
        "  add sp, sp, #176\n  ret\n.size bn_sim_switch, .-bn_sim_switch\n");
#else
#error "metal-sim: fibers for x86-64 and AArch64 only"
#endif

static void yield_to_scheduler(int state) {
  group *g = running;
  g->f[g->cur].state = state;
  bn_sim_switch(&g->f[g->cur].sp, g->sched_sp);
}

static void fiber_main(void) {
  group *g = running;
  fiber *f = &g->f[g->cur];
  g->entry(g->buffers, g->tg, f->ids);
  yield_to_scheduler(DONE);
  abort(); /* a finished fiber is never resumed */
}

/* A fresh stack for fiber i whose first switch lands in fiber_main. */
static void *fresh_stack(group *g, int i) {
  /* tops staggered by 3 cache lines a fiber, so they do not all fall in the same cache sets */
  uint8_t *top = g->stacks + (size_t)(i + 1) * STACK - (size_t)(i % 21) * 192;
#if defined(__x86_64__)
  uint64_t *sp = (uint64_t *)((uintptr_t)top & ~(uintptr_t)15);
  *--sp = 0;                        /* fiber_main's frame: as if called, rsp + 8 aligned */
  *--sp = (uint64_t)(uintptr_t)fiber_main;
  for (int r = 0; r < 6; r++) *--sp = 0;
  return sp;
#else
  uint64_t *sp = (uint64_t *)(((uintptr_t)top & ~(uintptr_t)15) - 176);
  memset(sp, 0, 176);
  sp[11] = (uint64_t)(uintptr_t)fiber_main; /* x30: where ret goes */
  return sp;
#endif
}

static void rt_barrier(void) { yield_to_scheduler(AT_BARRIER); }
static void rt_simd_sync(void) { yield_to_scheduler(AT_SIMD); }
static void *rt_simd_slots(void) {
  group *g = running;
  return g->slots + (size_t)g->f[g->cur].ids[3] * 32 * SLOT;
}
static unsigned rt_lane(void) { return running->f[running->cur].ids[4]; }
const bn_sim_rt bn_sim_runtime = {rt_barrier, rt_simd_sync, rt_simd_slots, rt_lane};

/* Runs the group's fibers from a queue, first in thread order, each until it blocks; a simdgroup
 * whose 32 lanes all wait at a simdgroup function goes to the back of the queue, and so does the
 * group when every thread waits at the barrier. When the queue runs dry before every thread is
 * done, the threads wait for one another in vain: an error. */
static bn_status run_group(group *g, const char *name, bn_error *err) {
  int n = g->n, done = 0, barrier = 0, simd[32] = {0}, head = 0, tail = 0;
  int *q = g->queue; /* a ring of n: no fiber is queued twice */
  for (int i = 0; i < n; i++) q[tail++] = i;
  while (head != tail) {
    int i = q[head++ % n], sg = i / 32;
    g->cur = i;
    bn_sim_switch(&g->sched_sp, g->f[i].sp);
    if (g->f[i].state == DONE) done++;
    else if (g->f[i].state == AT_SIMD && ++simd[sg] == 32) {
      for (int l = 0; l < 32; l++) g->f[sg * 32 + l].state = READY, q[tail++ % n] = sg * 32 + l;
      simd[sg] = 0;
    } else if (g->f[i].state == AT_BARRIER && ++barrier == n) {
      for (int t = 0; t < n; t++) g->f[t].state = READY, q[tail++ % n] = t;
      barrier = 0;
    }
  }
  if (done == n) return BN_OK;
  for (int s = 0; s < n / 32; s++) {
    int gone = 0;
    for (int l = 0; l < 32; l++) gone += g->f[s * 32 + l].state == DONE;
    if (simd[s] && gone)
      return bn_fail(err, BN_E_INVALID, "metal-sim: %s: in simdgroup %d, %d lanes wait at a simdgroup function that "
                     "%d finished lanes never reached", name, s, simd[s], gone);
  }
  if (barrier && done)
    return bn_fail(err, BN_E_INVALID, "metal-sim: %s: %d threads wait at a threadgroup barrier that %d finished "
                   "threads never reached", name, barrier, done);
  return bn_fail(err, BN_E_INVALID, "metal-sim: %s: threads wait at different barriers (%d at a threadgroup barrier, "
                 "%d at a simdgroup function): a barrier in divergent code", name, barrier, n - barrier - done);
}

/* Fibers, stacks and slots for n threads and a threadgroup block of tg bytes (and its guard). */
static bn_status room(bn_sim_lib *lib, uint32_t n, uint32_t tg, bn_error *err) {
  if (n > lib->room_threads) {
    if (lib->stacks) munmap(lib->stacks, (size_t)lib->room_threads * STACK);
    free(lib->f), free(lib->queue), free(lib->slots);
    lib->room_threads = 0;
    lib->stacks = mmap(NULL, (size_t)n * STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (lib->stacks == MAP_FAILED) lib->stacks = NULL;
    lib->f = calloc(n, sizeof *lib->f), lib->queue = calloc(n, sizeof *lib->queue);
    lib->slots = calloc(n / 32, 32 * SLOT);
    if (!lib->stacks || !lib->f || !lib->queue || !lib->slots) return bn_fail(err, BN_E_NOMEM, "metal-sim: out of memory");
    lib->room_threads = n;
  }
  if (tg + GUARD > lib->room_tg || !lib->tg) {
    free(lib->tg);
    if (!(lib->tg = malloc(tg + GUARD))) return lib->room_tg = 0, bn_fail(err, BN_E_NOMEM, "metal-sim: out of memory");
    lib->room_tg = tg + GUARD;
  }
  return BN_OK;
}

bn_status bn_sim_dispatch(bn_sim_lib *lib, int k, const bn_sim_grid *grid, bn_error *err) {
  if (k < 0 || k >= lib->n) return bn_fail(err, BN_E_INVALID, "metal-sim: no kernel %d", k);
  const char *name = lib->names[k];
  uint32_t n = grid->threads;
  if (!n || n % 32 || n > 1024)
    return bn_fail(err, BN_E_INVALID, "metal-sim: %s: %u threads a group (a multiple of 32, at most 1024)", name, n);
  if (grid->tg_bytes > 32768)
    return bn_fail(err, BN_E_INVALID, "metal-sim: %s: %u bytes of threadgroup memory (Metal's limit is 32 KiB)", name,
                   grid->tg_bytes);
  bn_status st = room(lib, n, grid->tg_bytes, err);
  if (st) return st;
  group g = {.n = (int)n, .entry = lib->entry[k], .buffers = grid->buffers, .f = lib->f, .queue = lib->queue, .slots = lib->slots,
             .tg = lib->tg, .stacks = lib->stacks};
  group *outer = running;
  running = &g;
  for (uint32_t y = 0; !st && y < grid->groups[1]; y++)
    for (uint32_t x = 0; !st && x < grid->groups[0]; x++) {
      memset(g.tg, 0xff, grid->tg_bytes + GUARD); /* NaN floats, -1 integers: what nobody wrote */
      memset(g.slots, 0, (size_t)n * SLOT);
      for (uint32_t i = 0; i < n; i++)
        g.f[i] = (fiber){.state = READY, .ids = {x, y, i, i / 32, i % 32}}, g.f[i].sp = fresh_stack(&g, (int)i);
      st = run_group(&g, name, err);
      for (int b = 0; !st && b < GUARD; b++)
        if (((uint8_t *)g.tg)[grid->tg_bytes + b] != 0xff)
          st = bn_fail(err, BN_E_INVALID, "metal-sim: %s: wrote past its %u bytes of threadgroup memory", name,
                       grid->tg_bytes);
      if (st && err) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        bn_fail(err, st, "%s (group %u, %u)", why, x, y);
      }
    }
  running = outer;
  return st;
}
