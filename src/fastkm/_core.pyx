# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Cython kernels of fastkm: each public function is one parallel pass over rows of X.

The Python layer owns the iteration loop (see ``fastkm._lloyd``); these kernels only do the
work that touches every row. Every kernel:

* takes C-contiguous inputs of one floating type (float32 data stays float32; sums, weights
  and inertia accumulate in float64);
* splits the rows into fixed chunks that depend on the number of rows only, runs the chunks
  in an OpenMP ``prange`` and merges their partial results in chunk order, so that results
  are bit-identical for every thread count;
* works on any slice of rows and returns partial sums for it, so a chunked or distributed fit
  can call it unchanged and add the partials up itself;
* never allocates an (n, k) array: extra memory is O(chunks x k x d) plus a small buffer per
  thread.

Rows go in vector lanes: a block of ``BLOCK_ROWS`` rows is transposed into a per-thread
buffer, then each centre is compared with the whole block at once. The comparisons are
branchless so that the compiler vectorizes them. Distances are computed directly as
sum((x - c)**2), except in ``lloyd_pass`` from ``DOT_FORM_MIN_FEATURES`` features on, where
the nearest centre is found with the dot-product form (see "Lloyd for d > 4" below); its
inertia and sums are still computed directly. For d > 4, ``lloyd_pass`` compares blocks with
panels of centres in register-blocked C micro-kernels.
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY, sqrt

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTKM_OPENMP 1
    #define fastkm_omp_max_threads() omp_get_max_threads()
    #else
    #define FASTKM_OPENMP 0
    #define fastkm_omp_max_threads() 1
    #endif

    /* The instruction-set level this copy of the module was compiled for. */
    #if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    #define FASTKM_COMPILED_LEVEL 4
    #elif defined(__AVX2__) && defined(__FMA__)
    #define FASTKM_COMPILED_LEVEL 3
    #else
    #define FASTKM_COMPILED_LEVEL 1
    #endif

    /* The highest x86-64 level this CPU (and its OS) supports: 4, 3 or 1 (baseline). */
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    static int fastkm_cpu_level(void) {
        __builtin_cpu_init();
        int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                 && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2")
                 && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("movbe");
        int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                 && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
                 && __builtin_cpu_supports("avx512vl");
        return v4 ? 4 : (v3 ? 3 : 1);
    }
    #else
    static int fastkm_cpu_level(void) { return 1; }
    #endif
    """
    int FASTKM_OPENMP
    int FASTKM_COMPILED_LEVEL
    int fastkm_omp_max_threads() noexcept nogil
    int fastkm_cpu_level() noexcept nogil


cdef extern from *:
    """
    /* Register-blocked micro-kernels of lloyd_pass for d > 4 (see _lloyd_chunk_panels).

    fastkm_panel_nearest[_direct]_{f,d}(block_t, panel, base, d, first, best, label) compares
    the FASTKM_BLOCK_ROWS rows of a transposed block with the FASTKM_PANEL centres of a packed
    panel (centre indices first, first + 1, ...): for each row r and centre g, in that order,

        x_f = block_t[f * FASTKM_BLOCK_ROWS + r], c_f = panel[f * FASTKM_PANEL + g]
        score = base[g] - sum over f of x_f * c_f        (dot-product form)
        score = base[g] + sum over f of (x_f - c_f)^2    (direct form, "_direct")
        if score < best[r]: best[r] = score, label[r] = first + g

    with the sum taken in feature order (FMAs where the ISA has them), so ties go to the
    lowest index. The accumulators are local variables of GCC/Clang vector types, so
    the compiler keeps them in registers for the whole feature loop; written with arrays (as
    Cython does), gcc spills part of them to the stack and reloads them every feature. The
    panel width fits the register file of each level: 2 row vectors x FASTKM_PANEL centres
    accumulators plus the two row vectors and a broadcast centre value. The scores never
    leave the registers either: the argmin update is done here, branchless.
    The direct form needs a subtraction and an FMA per term, the dot form one FMA. */
    #define FASTKM_BLOCK_ROWS 32
    #if (defined(__GNUC__) || defined(__clang__)) && !defined(FASTKM_NO_VECTOR_EXTENSIONS)
    #define FASTKM_VECTOR_EXTENSIONS 1
    #if defined(__AVX512F__)
    #define FASTKM_VBYTES 64
    #define FASTKM_PANEL 8      /* 16 of 32 zmm registers; 3% faster than 12 on Zen 4 (which
                                   runs AVX-512 on 256-bit units) from d = 8 to 128 */
    #elif defined(__AVX__)
    #define FASTKM_VBYTES 32
    #define FASTKM_PANEL 6      /* 12 of 16 ymm registers */
    #else
    #define FASTKM_VBYTES 16
    #define FASTKM_PANEL 4      /* 8 of 16 xmm registers: no FMA, products need temporaries */
    #endif

    /* IT: the integer type as wide as T (the type of T's comparison masks). */
    #define FASTKM_DEFINE_PANEL_NEAREST(NAME, T, IT, DIRECT)                                  \\
    __attribute__((noinline)) /* one call per panel; keeps it visible to perf */           \\
    static void NAME(const T* block_t, const T* panel, const T* base, Py_ssize_t d,            \\
                     int first, T* best, int* label) {                                        \\
        typedef T vec __attribute__((vector_size(FASTKM_VBYTES)));                            \\
        typedef IT ivec __attribute__((vector_size(FASTKM_VBYTES)));                          \\
        enum { W = FASTKM_VBYTES / (int)sizeof(T) };                                          \\
        typedef int ivec32 __attribute__((vector_size(W * sizeof(int))));                     \\
        for (int r0 = 0; r0 < FASTKM_BLOCK_ROWS; r0 += 2 * W) {                               \\
            vec acc0[FASTKM_PANEL], acc1[FASTKM_PANEL];                                       \\
            _Pragma("GCC unroll 16")                                                          \\
            for (int g = 0; g < FASTKM_PANEL; g++) { acc0[g] = (vec){0}; acc1[g] = (vec){0}; } \\
            const T* x = block_t + r0;                                                        \\
            const T* c = panel;                                                               \\
            for (Py_ssize_t f = 0; f < d; f++) {                                              \\
                vec x0, x1;                                                                   \\
                __builtin_memcpy(&x0, x, sizeof(vec)); /* unaligned loads */                  \\
                __builtin_memcpy(&x1, x + W, sizeof(vec));                                    \\
                _Pragma("GCC unroll 16")                                                      \\
                for (int g = 0; g < FASTKM_PANEL; g++) {                                      \\
                    if (DIRECT) {                                                             \\
                        vec t = x0 - c[g];                                                    \\
                        acc0[g] += t * t;                                                     \\
                        t = x1 - c[g];                                                        \\
                        acc1[g] += t * t;                                                     \\
                    } else {                                                                  \\
                        acc0[g] += x0 * c[g];                                                 \\
                        acc1[g] += x1 * c[g];                                                 \\
                    }                                                                         \\
                }                                                                             \\
                x += FASTKM_BLOCK_ROWS;                                                       \\
                c += FASTKM_PANEL;                                                            \\
            }                                                                                 \\
            vec b0, b1;                                                                       \\
            ivec32 l0_32, l1_32;                                                              \\
            __builtin_memcpy(&b0, best + r0, sizeof(vec));                                    \\
            __builtin_memcpy(&b1, best + r0 + W, sizeof(vec));                                \\
            __builtin_memcpy(&l0_32, label + r0, sizeof(ivec32));                             \\
            __builtin_memcpy(&l1_32, label + r0 + W, sizeof(ivec32));                         \\
            ivec l0 = __builtin_convertvector(l0_32, ivec);                                   \\
            ivec l1 = __builtin_convertvector(l1_32, ivec);                                   \\
            _Pragma("GCC unroll 16")                                                          \\
            for (int g = 0; g < FASTKM_PANEL; g++) { /* in index order: ties keep the lowest */ \\
                vec s0 = DIRECT ? base[g] + acc0[g] : base[g] - acc0[g];                      \\
                vec s1 = DIRECT ? base[g] + acc1[g] : base[g] - acc1[g];                      \\
                ivec m0 = s0 < b0, m1 = s1 < b1; /* all ones where the score is lower */      \\
                ivec j = (ivec){0} + (IT)(first + g);                                         \\
                b0 = (vec)(((ivec)s0 & m0) | ((ivec)b0 & ~m0));                               \\
                b1 = (vec)(((ivec)s1 & m1) | ((ivec)b1 & ~m1));                               \\
                l0 = (j & m0) | (l0 & ~m0);                                                   \\
                l1 = (j & m1) | (l1 & ~m1);                                                   \\
            }                                                                                 \\
            l0_32 = __builtin_convertvector(l0, ivec32);                                      \\
            l1_32 = __builtin_convertvector(l1, ivec32);                                      \\
            __builtin_memcpy(best + r0, &b0, sizeof(vec));                                    \\
            __builtin_memcpy(best + r0 + W, &b1, sizeof(vec));                                \\
            __builtin_memcpy(label + r0, &l0_32, sizeof(ivec32));                             \\
            __builtin_memcpy(label + r0 + W, &l1_32, sizeof(ivec32));                         \\
        }                                                                                     \\
    }
    #else
    /* Portable fallback: the same sums in the same order, left to the compiler. */
    #define FASTKM_VECTOR_EXTENSIONS 0
    #define FASTKM_PANEL 8
    #define FASTKM_DEFINE_PANEL_NEAREST(NAME, T, IT, DIRECT)                                  \\
    static void NAME(const T* block_t, const T* panel, const T* base, Py_ssize_t d,            \\
                     int first, T* best, int* label) {                                        \\
        T dots[FASTKM_PANEL * FASTKM_BLOCK_ROWS];                                             \\
        for (int i = 0; i < FASTKM_PANEL * FASTKM_BLOCK_ROWS; i++) dots[i] = 0;               \\
        for (Py_ssize_t f = 0; f < d; f++)                                                    \\
            for (int g = 0; g < FASTKM_PANEL; g++)                                            \\
                for (int r = 0; r < FASTKM_BLOCK_ROWS; r++)                                   \\
                    if (DIRECT) {                                                             \\
                        T t = block_t[f * FASTKM_BLOCK_ROWS + r] - panel[f * FASTKM_PANEL + g]; \\
                        dots[g * FASTKM_BLOCK_ROWS + r] += t * t;                             \\
                    } else {                                                                  \\
                        dots[g * FASTKM_BLOCK_ROWS + r] += block_t[f * FASTKM_BLOCK_ROWS + r] \\
                                                           * panel[f * FASTKM_PANEL + g];     \\
                    }                                                                         \\
        for (int g = 0; g < FASTKM_PANEL; g++)                                                \\
            for (int r = 0; r < FASTKM_BLOCK_ROWS; r++) {                                     \\
                T score = DIRECT ? base[g] + dots[g * FASTKM_BLOCK_ROWS + r]                  \\
                                 : base[g] - dots[g * FASTKM_BLOCK_ROWS + r];                 \\
                label[r] = score < best[r] ? first + g : label[r];                            \\
                best[r] = score < best[r] ? score : best[r];                                  \\
            }                                                                                 \\
    }
    #endif
    /* fastkm_transpose_shifted_{f,d}(X, d, n_real, shift, block_t): block_t[f, i] =
    X[min(i, n_real - 1), f] - shift[f] for the FASTKM_BLOCK_ROWS rows of a block, X's rows
    being d apart. Element by element, the stores go FASTKM_BLOCK_ROWS apart, and at d = 128
    that took a tenth of the pass; with vector shuffles, square tiles of LANES rows x LANES
    features are transposed in registers: log2(LANES) rounds of interleaving vector i with
    vector i + LANES / 2 turn rows into columns. */
    #if FASTKM_VECTOR_EXTENSIONS && defined(__has_builtin)
    #if __has_builtin(__builtin_shufflevector)
    #define FASTKM_SHUFFLE_TRANSPOSE 1
    #endif
    #endif
    #ifndef FASTKM_SHUFFLE_TRANSPOSE
    #define FASTKM_SHUFFLE_TRANSPOSE 0
    #endif
    #define FASTKM_LO_2 0, 2
    #define FASTKM_HI_2 1, 3
    #define FASTKM_LO_4 0, 4, 1, 5
    #define FASTKM_HI_4 2, 6, 3, 7
    #define FASTKM_LO_8 0, 8, 1, 9, 2, 10, 3, 11
    #define FASTKM_HI_8 4, 12, 5, 13, 6, 14, 7, 15
    #define FASTKM_LO_16 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
    #define FASTKM_HI_16 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
    #define FASTKM_CAT(a, b) a##b
    #define FASTKM_XCAT(a, b) FASTKM_CAT(a, b)
    #if FASTKM_SHUFFLE_TRANSPOSE
    #define FASTKM_TRANSPOSE_TILES(T, LANES) {                                                \\
        typedef T tvec __attribute__((vector_size(LANES * sizeof(T))));                       \\
        for (; f0 + LANES <= d; f0 += LANES) {                                                \\
            tvec s;                                                                           \\
            __builtin_memcpy(&s, shift + f0, sizeof(tvec));                                   \\
            for (int i0 = 0; i0 < FASTKM_BLOCK_ROWS; i0 += LANES) {                           \\
                tvec r[LANES], t[LANES];                                                      \\
                _Pragma("GCC unroll 16")                                                      \\
                for (int i = 0; i < LANES; i++) {                                             \\
                    Py_ssize_t row = i0 + i < n_real ? i0 + i : n_real - 1;                   \\
                    __builtin_memcpy(&r[i], X + row * d + f0, sizeof(tvec));                  \\
                    r[i] -= s;                                                                \\
                }                                                                             \\
                _Pragma("GCC unroll 4")                                                       \\
                for (int w = 1; w < LANES; w *= 2) {                                          \\
                    _Pragma("GCC unroll 8")                                                   \\
                    for (int i = 0; i < LANES / 2; i++) {                                     \\
                        t[2 * i] = __builtin_shufflevector(r[i], r[i + LANES / 2],            \\
                                                           FASTKM_XCAT(FASTKM_LO_, LANES));   \\
                        t[2 * i + 1] = __builtin_shufflevector(r[i], r[i + LANES / 2],        \\
                                                               FASTKM_XCAT(FASTKM_HI_, LANES)); \\
                    }                                                                         \\
                    _Pragma("GCC unroll 16")                                                  \\
                    for (int i = 0; i < LANES; i++) r[i] = t[i];                              \\
                }                                                                             \\
                _Pragma("GCC unroll 16")                                                      \\
                for (int f = 0; f < LANES; f++)                                               \\
                    __builtin_memcpy(block_t + (f0 + f) * FASTKM_BLOCK_ROWS + i0, &r[f],      \\
                                     sizeof(tvec));                                           \\
            }                                                                                 \\
        }                                                                                     \\
    }
    #else
    #define FASTKM_TRANSPOSE_TILES(T, LANES)
    #endif
    /* Tiles of LANES features, then of HALF (d = 8 is one tile of 8 rather than 8 single
       features when LANES = 16), then single features. */
    #define FASTKM_DEFINE_TRANSPOSE(NAME, T, LANES, HALF)                                     \\
    static void NAME(const T* X, Py_ssize_t d, Py_ssize_t n_real, const T* shift,            \\
                     T* block_t) {                                                            \\
        Py_ssize_t f0 = 0;                                                                    \\
        FASTKM_TRANSPOSE_TILES(T, LANES)                                                      \\
        FASTKM_TRANSPOSE_TILES(T, HALF)                                                       \\
        for (int i = 0; i < FASTKM_BLOCK_ROWS; i++) { /* features left over, if any */       \\
            const T* row = X + (i < n_real ? i : n_real - 1) * d;                             \\
            for (Py_ssize_t f = f0; f < d; f++)                                               \\
                block_t[f * FASTKM_BLOCK_ROWS + i] = row[f] - shift[f];                       \\
        }                                                                                     \\
    }
    #if FASTKM_SHUFFLE_TRANSPOSE && FASTKM_VBYTES == 64
    FASTKM_DEFINE_TRANSPOSE(fastkm_transpose_shifted_f, float, 16, 8)
    FASTKM_DEFINE_TRANSPOSE(fastkm_transpose_shifted_d, double, 8, 4)
    #elif FASTKM_SHUFFLE_TRANSPOSE && FASTKM_VBYTES == 32
    FASTKM_DEFINE_TRANSPOSE(fastkm_transpose_shifted_f, float, 8, 4)
    FASTKM_DEFINE_TRANSPOSE(fastkm_transpose_shifted_d, double, 4, 2)
    #else
    FASTKM_DEFINE_TRANSPOSE(fastkm_transpose_shifted_f, float, 4, 2)
    FASTKM_DEFINE_TRANSPOSE(fastkm_transpose_shifted_d, double, 2, 2)
    #endif
    #if defined(__GNUC__) || defined(__clang__)
    #define fastkm_prefetch(p) __builtin_prefetch((p), 0, 1)
    #else
    #define fastkm_prefetch(p) ((void)(p))
    #endif
    FASTKM_DEFINE_PANEL_NEAREST(fastkm_panel_nearest_f, float, int, 0)
    FASTKM_DEFINE_PANEL_NEAREST(fastkm_panel_nearest_d, double, long long, 0)
    FASTKM_DEFINE_PANEL_NEAREST(fastkm_panel_nearest_direct_f, float, int, 1)
    FASTKM_DEFINE_PANEL_NEAREST(fastkm_panel_nearest_direct_d, double, long long, 1)
    """
    enum: FASTKM_PANEL
    enum: FASTKM_BLOCK_ROWS
    int FASTKM_VECTOR_EXTENSIONS
    void fastkm_prefetch(const void* address) noexcept nogil
    void fastkm_transpose_shifted_f(const float* X, Py_ssize_t d, Py_ssize_t n_real,
                                    const float* shift, float* block_t) noexcept nogil
    void fastkm_transpose_shifted_d(const double* X, Py_ssize_t d, Py_ssize_t n_real,
                                    const double* shift, double* block_t) noexcept nogil
    void fastkm_panel_nearest_f(const float* block_t, const float* panel, const float* base,
                                Py_ssize_t d, int first, float* best, int* label) noexcept nogil
    void fastkm_panel_nearest_d(const double* block_t, const double* panel,
                                const double* base, Py_ssize_t d, int first, double* best,
                                int* label) noexcept nogil
    void fastkm_panel_nearest_direct_f(const float* block_t, const float* panel,
                                       const float* base, Py_ssize_t d, int first,
                                       float* best, int* label) noexcept nogil
    void fastkm_panel_nearest_direct_d(const double* block_t, const double* panel,
                                       const double* base, Py_ssize_t d, int first,
                                       double* best, int* label) noexcept nogil



cdef enum:
    # Rows compared with a centre at once; a multiple of every vector width in use.
    BLOCK_ROWS = 32
    # Row chunks: at most MAX_CHUNKS per call, each of at least MIN_CHUNK_ROWS rows. Both are
    # constants so that the chunking, and thus every sum, depends on the number of rows only.
    MIN_CHUNK_ROWS = 2048
    MAX_CHUNKS = 64
    # See _accumulator_ways.
    ACCUMULATOR_WAYS = 4
    # k-means++ candidates scored per pass (2 + ln k of them: 64 covers any k).
    MAX_CANDIDATES = 64
    # Multiply-adds a thread must get before a pass uses it (about a quarter millisecond).
    MIN_WORK_PER_THREAD = 1 << 20
    # A guess at a bounded pass's work per row and feature (bounds, some distances).
    BOUNDED_WORK_PER_ROW = 8
    # Exponion: nearest other centres listed per centre for the ball search.
    BALL_NEIGHBOURS = 32
    # Doubles in a 64-byte cache line.
    CACHE_LINE_DOUBLES = 8
    # lloyd_pass: up to MAX_UNROLLED_FEATURES features, _lloyd_chunk_d compiled for each d;
    # above, centre panels and C micro-kernels (_lloyd_chunk_panels): the direct form
    # sum((x - c)**2) below DOT_FORM_MIN_FEATURES features, the dot-product form from there.
    MAX_UNROLLED_FEATURES = 4
    DOT_FORM_MIN_FEATURES = 16
    # Interleaved partial sums in _sq_distance: one AVX-512 vector of doubles.
    SQ_DISTANCE_WAYS = 8

# Relative widening of Exponion's search ball and narrowing of the half gaps, far above the
# rounding of the distances they are compared with.
cdef double BALL_MARGIN = 1e-5
# Exponion's neighbour lists are rebuilt once twice the largest drift of a centre since they
# were built exceeds this fraction of the mean distance between neighbouring centres.
cdef double TABLE_SLACK = 0.25

# The C micro-kernel and the Cython block code must agree on the block height.
assert FASTKM_BLOCK_ROWS == BLOCK_ROWS


# ---------------------------------------------------------------------------------------------
# Build and machine information


def openmp_enabled():
    """Whether this module was compiled with OpenMP."""
    return bool(FASTKM_OPENMP)


def openmp_max_threads():
    """OpenMP's current default thread count (honours OMP_NUM_THREADS and threadpoolctl)."""
    return fastkm_omp_max_threads()


def compiled_level():
    """The x86-64 instruction-set level this module was built for: 1, 3 or 4."""
    return FASTKM_COMPILED_LEVEL


def cpu_level():
    """The highest x86-64 instruction-set level the running CPU supports: 1, 3 or 4."""
    return fastkm_cpu_level()


def lloyd_layout():
    """How lloyd_pass finds nearest centres: ``(max_unrolled, dot_form_min, panel_width)``.

    Up to ``max_unrolled`` features, code compiled for each d; above, centres in panels of
    ``panel_width`` (which depends on the instruction-set level) and the direct form, or from
    ``dot_form_min`` features on the dot-product form. Exposed for tests and benchmarks.
    """
    return MAX_UNROLLED_FEATURES, DOT_FORM_MIN_FEATURES, FASTKM_PANEL


def ball_neighbours():
    """How many nearest other centres exponion_pass lists per centre (its tables' width)."""
    return BALL_NEIGHBOURS


def row_chunks(Py_ssize_t n_rows):
    """The fixed chunking the kernels use for ``n_rows`` rows: ``(n_chunks, chunk_rows)``."""
    cdef Py_ssize_t n_chunks, chunk_rows
    _row_chunks(n_rows, &n_chunks, &chunk_rows)
    return n_chunks, chunk_rows


cdef inline void _row_chunks(Py_ssize_t n_rows,
                             Py_ssize_t* n_chunks,     # OUT
                             Py_ssize_t* chunk_rows,   # OUT
                             ) noexcept nogil:
    if n_rows <= 0:
        n_chunks[0] = 0
        chunk_rows[0] = 0
        return
    n_chunks[0] = min(<Py_ssize_t>MAX_CHUNKS, (n_rows + MIN_CHUNK_ROWS - 1) // MIN_CHUNK_ROWS)
    chunk_rows[0] = (n_rows + n_chunks[0] - 1) // n_chunks[0]
    # Rounding the chunk size up can leave trailing chunks empty; drop them.
    n_chunks[0] = (n_rows + chunk_rows[0] - 1) // chunk_rows[0]


# ---------------------------------------------------------------------------------------------
# Block helpers (one thread, BLOCK_ROWS rows). They take d as an argument and are inlined:
# the chunk functions below call them with a literal d for the small dimensions that matter
# most (colours), which lets the compiler unroll the feature loops and keep a block's
# distances in registers.


cdef inline Py_ssize_t _transpose_block(
        const floating* X,          # IN  (n, d) C-contiguous data
        Py_ssize_t d,
        Py_ssize_t start,           # IN  first row of the block
        Py_ssize_t stop,            # IN  end of the rows this chunk may read
        floating* block_t,          # OUT (d, BLOCK_ROWS) the block's rows in lanes
) noexcept nogil:
    """Copy rows [start, start + BLOCK_ROWS) of X into lanes; return how many are real.

    Lanes past the end repeat the last real row, so they hold finite, ignorable values.
    """
    cdef Py_ssize_t n_real = min(<Py_ssize_t>BLOCK_ROWS, stop - start)
    cdef Py_ssize_t i, f
    cdef const floating* row
    for i in range(BLOCK_ROWS):
        row = X + (start + min(i, n_real - 1)) * d
        for f in range(d):
            block_t[f * BLOCK_ROWS + i] = row[f]
    return n_real


cdef inline void _block_sq_distances(
        const floating* block_t,    # IN  (d, BLOCK_ROWS) rows in lanes
        const floating* center,     # IN  (d,) one centre
        Py_ssize_t d,
        floating* dist,             # OUT (BLOCK_ROWS,) squared distances to the centre
) noexcept nogil:
    cdef Py_ssize_t i, f
    cdef floating c, t
    for i in range(BLOCK_ROWS):
        dist[i] = 0
    for f in range(d):
        c = center[f]
        for i in range(BLOCK_ROWS):
            t = block_t[f * BLOCK_ROWS + i] - c
            dist[i] += t * t


cdef inline void _block_sq_distances_4(
        const floating* block_t,    # IN  (d, BLOCK_ROWS) rows in lanes
        const floating* centers,    # IN  (4, d) four consecutive centres
        Py_ssize_t d,
        floating* dist,             # OUT (4, BLOCK_ROWS) squared distances to each centre
) noexcept nogil:
    """Four centres at once: eight or more independent sums hide the FMA latency."""
    cdef Py_ssize_t i, f
    cdef floating c0, c1, c2, c3, x, t0, t1, t2, t3
    for i in range(4 * BLOCK_ROWS):
        dist[i] = 0
    for f in range(d):
        c0 = centers[f]
        c1 = centers[d + f]
        c2 = centers[2 * d + f]
        c3 = centers[3 * d + f]
        for i in range(BLOCK_ROWS):
            x = block_t[f * BLOCK_ROWS + i]
            t0 = x - c0
            t1 = x - c1
            t2 = x - c2
            t3 = x - c3
            dist[i] += t0 * t0
            dist[BLOCK_ROWS + i] += t1 * t1
            dist[2 * BLOCK_ROWS + i] += t2 * t2
            dist[3 * BLOCK_ROWS + i] += t3 * t3


cdef inline void _keep_nearer(
        const floating* dist,       # IN  (BLOCK_ROWS,) distances to centre j
        int j,
        floating* best,             # IN/OUT (BLOCK_ROWS,)
        int* label,                 # IN/OUT (BLOCK_ROWS,)
) noexcept nogil:
    cdef Py_ssize_t i
    # Branchless selects: an if-statement here stops the loop from vectorizing.
    for i in range(BLOCK_ROWS):
        label[i] = j if dist[i] < best[i] else label[i]
        best[i] = dist[i] if dist[i] < best[i] else best[i]


cdef inline void _block_nearest(
        const floating* block_t,    # IN  (d, BLOCK_ROWS) rows in lanes
        const floating* centers,    # IN  (k, d) C-contiguous
        Py_ssize_t k, Py_ssize_t d,
        floating* best,             # OUT (BLOCK_ROWS,) squared distance to the nearest centre
        int* label,                 # OUT (BLOCK_ROWS,) index of the nearest centre
) noexcept nogil:
    """Nearest centre of each lane; ties go to the lowest index, as numpy's argmin."""
    cdef Py_ssize_t i, j
    cdef floating dist[4 * BLOCK_ROWS]
    for i in range(BLOCK_ROWS):
        best[i] = INFINITY
        label[i] = 0
    for j in range(0, k - 3, 4):
        _block_sq_distances_4(block_t, centers + j * d, d, dist)
        for i in range(4):  # in index order, so that ties keep the lowest index
            _keep_nearer(dist + i * BLOCK_ROWS, <int>(j + i), best, label)
    for j in range(k - k % 4, k):
        _block_sq_distances(block_t, centers + j * d, d, dist)
        _keep_nearer(dist, <int>j, best, label)


# ---------------------------------------------------------------------------------------------
# Lloyd: assignment and accumulation in one pass


cdef inline Py_ssize_t _accumulator_ways(Py_ssize_t d) noexcept nogil:
    """Copies of the per-cluster sums that consecutive rows rotate through.

    Neighbouring rows (pixels above all) often share a cluster, and adding them to the same
    sums makes a chain of dependent memory updates; rotating through copies breaks it. High
    dimensions have enough independent additions per row already.
    """
    return ACCUMULATOR_WAYS if d <= 16 else 1


cdef inline void _lloyd_chunk_d(
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,)
        const floating* centers,             # IN  (k, d)
        Py_ssize_t k, Py_ssize_t d,
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        Py_ssize_t ways,                     # IN  copies of the sums, a power of two
        floating* block_t,                   # scratch (d, BLOCK_ROWS)
        int* labels,                         # OUT (n,) rows [start, stop) written
        double* acc,                         # OUT (ways, k, d + 1) zeroed: per cluster, the
                                             #     weighted sum of its rows, then its weight
        double* inertia,                     # OUT weighted squared distances of the chunk
) noexcept nogil:
    cdef Py_ssize_t block_start, i, f, n_real
    cdef floating best[BLOCK_ROWS]
    cdef int label[BLOCK_ROWS]
    cdef double lane_weight[BLOCK_ROWS]
    cdef double lane_inertia[BLOCK_ROWS]
    cdef double w
    cdef double* cluster
    for i in range(BLOCK_ROWS):
        lane_inertia[i] = 0
    for block_start from start <= block_start < stop by BLOCK_ROWS:
        n_real = _transpose_block(X, d, block_start, stop, block_t)
        _block_nearest(block_t, centers, k, d, best, label)
        for i in range(BLOCK_ROWS):
            lane_weight[i] = sample_weight[block_start + i] if i < n_real else 0
        for i in range(BLOCK_ROWS):
            lane_inertia[i] += lane_weight[i] * best[i]
        for i in range(n_real):
            labels[block_start + i] = label[i]
            w = lane_weight[i]
            cluster = acc + ((i & (ways - 1)) * k + label[i]) * (d + 1)
            for f in range(d):
                cluster[f] += w * block_t[f * BLOCK_ROWS + i]
            cluster[d] += w
    inertia[0] = 0
    for i in range(BLOCK_ROWS):
        inertia[0] += lane_inertia[i]


cdef void _lloyd_chunk(
        const floating* X, const floating* sample_weight, const floating* centers,
        Py_ssize_t k, Py_ssize_t d, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t ways,
        floating* block_t, int* labels, double* acc, double* inertia,
) noexcept nogil:
    """_lloyd_chunk_d, compiled separately for each d up to MAX_UNROLLED_FEATURES."""
    if d == 1:
        _lloyd_chunk_d(X, sample_weight, centers, k, 1, start, stop, ways, block_t, labels,
                       acc, inertia)
    elif d == 2:
        _lloyd_chunk_d(X, sample_weight, centers, k, 2, start, stop, ways, block_t, labels,
                       acc, inertia)
    elif d == 3:
        _lloyd_chunk_d(X, sample_weight, centers, k, 3, start, stop, ways, block_t, labels,
                       acc, inertia)
    else:  # d == 4: larger d go to _lloyd_chunk_panels
        _lloyd_chunk_d(X, sample_weight, centers, k, 4, start, stop, ways, block_t, labels,
                       acc, inertia)


# ---------------------------------------------------------------------------------------------
# Lloyd for d > 4: centre panels and register-blocked C micro-kernels
#
# The centres are packed in panels of FASTKM_PANEL (see _pack_panels), and a C micro-kernel
# compares a block with a whole panel keeping its 2 x FASTKM_PANEL accumulators in registers.
# Below DOT_FORM_MIN_FEATURES features it computes sum((x - c)**2) directly, as the d <= 4
# chunks do. From DOT_FORM_MIN_FEATURES on it uses the dot-product form: |x - c|^2 =
# |x|^2 - 2 x.c + |c|^2, and |x|^2 is the same for every centre, so the nearest centre
# minimises |c|^2 / 2 - x.c: one FMA per row, centre and feature instead of a subtraction
# and an FMA. Rounding: the score's error grows with |x| |c| rather than with |x - c|^2, so
# rows almost equidistant from two centres may be assigned differently from the direct form
# (as in scikit-learn, which uses this form at every d); identical centres still tie exactly.
# Two measures keep this small: rows and centres are shifted by the mean of the centres,
# which brings |x| and |c| down to the spread of the data; and the inertia and the sums
# never use the score: in both forms they are computed from X and the chosen centre, in
# float64.


cdef inline void _transpose_block_shifted(
        const floating* X,          # IN  (n, d) C-contiguous data
        Py_ssize_t d,
        Py_ssize_t start,           # IN  first row of the block
        Py_ssize_t stop,            # IN  end of the rows this chunk may read
        const floating* shift,      # IN  (d,) subtracted from every row
        floating* block_t,          # OUT (d, BLOCK_ROWS) the shifted rows in lanes
) noexcept nogil:
    """_transpose_block of X - shift (lanes past the end repeat the last real row)."""
    cdef Py_ssize_t n_real = min(<Py_ssize_t>BLOCK_ROWS, stop - start)
    if floating is float:
        fastkm_transpose_shifted_f(X + start * d, d, n_real, shift, block_t)
    else:
        fastkm_transpose_shifted_d(X + start * d, d, n_real, shift, block_t)


cdef inline void _block_nearest_panels(
        const floating* block_t,    # IN  (d, BLOCK_ROWS) shifted rows in lanes
        const floating* panels,     # IN  (n_panels, d, FASTKM_PANEL) see _pack_panels
        const floating* base,       # IN  (n_panels * FASTKM_PANEL,) see _pack_panels
        Py_ssize_t n_panels, Py_ssize_t d,
        bint dot_form,              # IN  which micro-kernel
        int* label,                 # OUT (BLOCK_ROWS,) index of the nearest centre
) noexcept nogil:
    """Nearest centre of each lane; exact ties go to the lowest index."""
    cdef Py_ssize_t i, p
    cdef floating best[BLOCK_ROWS]
    for i in range(BLOCK_ROWS):
        best[i] = INFINITY
        label[i] = 0
    for p in range(n_panels):  # in index order, so that ties keep the lowest index
        if floating is float:
            if dot_form:
                fastkm_panel_nearest_f(block_t, panels + p * d * FASTKM_PANEL,
                                       base + p * FASTKM_PANEL, d, <int>(p * FASTKM_PANEL),
                                       best, label)
            else:
                fastkm_panel_nearest_direct_f(block_t, panels + p * d * FASTKM_PANEL,
                                              base + p * FASTKM_PANEL, d,
                                              <int>(p * FASTKM_PANEL), best, label)
        else:
            if dot_form:
                fastkm_panel_nearest_d(block_t, panels + p * d * FASTKM_PANEL,
                                       base + p * FASTKM_PANEL, d, <int>(p * FASTKM_PANEL),
                                       best, label)
            else:
                fastkm_panel_nearest_direct_d(block_t, panels + p * d * FASTKM_PANEL,
                                              base + p * FASTKM_PANEL, d,
                                              <int>(p * FASTKM_PANEL), best, label)


cdef void _lloyd_chunk_panels(
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,)
        const floating* centers,             # IN  (k, d)
        const floating* panels,              # IN  see _pack_panels
        const floating* base,                # IN  see _pack_panels
        const floating* shift,               # IN  (d,) see _pack_panels
        Py_ssize_t k, Py_ssize_t d,
        bint dot_form,                       # IN  which micro-kernel
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        Py_ssize_t ways,                     # IN  copies of the sums, a power of two
        floating* block_t,                   # scratch (d, BLOCK_ROWS)
        int* labels,                         # OUT (n,) rows [start, stop) written
        double* acc,                         # OUT (ways, k, d + 1) zeroed, as _lloyd_chunk_d
        double* inertia,                     # OUT weighted squared distances of the chunk
) noexcept nogil:
    cdef Py_ssize_t n_panels = (k + FASTKM_PANEL - 1) // FASTKM_PANEL
    cdef Py_ssize_t block_start, i, f, n_real
    cdef int label[BLOCK_ROWS]
    cdef double w, total = 0
    cdef double* cluster
    cdef const floating* row
    cdef const floating* next_rows
    cdef Py_ssize_t line = 64 // sizeof(floating)  # values in a cache line
    for block_start from start <= block_start < stop by BLOCK_ROWS:
        n_real = min(<Py_ssize_t>BLOCK_ROWS, stop - block_start)
        _transpose_block_shifted(X, d, block_start, stop, shift, block_t)
        # The block takes k * d FMAs or more per row, long enough to fetch the next block from
        # memory meanwhile; the hardware prefetcher sees no accesses to X until then.
        next_rows = X + (block_start + BLOCK_ROWS) * d
        for f from 0 <= f < min(BLOCK_ROWS, stop - block_start - BLOCK_ROWS) * d by line:
            fastkm_prefetch(next_rows + f)
        _block_nearest_panels(block_t, panels, base, n_panels, d, dot_form, label)
        for i in range(n_real):
            # Sums and the exact distance to the chosen centre, from the unshifted row.
            labels[block_start + i] = label[i]
            w = sample_weight[block_start + i]
            row = X + (block_start + i) * d
            cluster = acc + ((i & (ways - 1)) * k + label[i]) * (d + 1)
            for f in range(d):
                cluster[f] += w * row[f]
            cluster[d] += w
            total += w * _sq_distance(row, centers + label[i] * d, d)
    inertia[0] = total


cdef inline double _sq_distance(
        const floating* x,          # IN  (d,)
        const floating* c,          # IN  (d,)
        Py_ssize_t d,
) noexcept nogil:
    """|x - c|^2 in float64, in SQ_DISTANCE_WAYS interleaved partial sums.

    A single running sum is a chain of dependent additions that the compiler may not
    reorder (no -ffast-math); fixed interleaved sums vectorize and stay deterministic.
    """
    cdef double part[SQ_DISTANCE_WAYS]
    cdef double t, total = 0
    cdef Py_ssize_t f, j, d_main = d - d % SQ_DISTANCE_WAYS
    for j in range(SQ_DISTANCE_WAYS):
        part[j] = 0
    for f from 0 <= f < d_main by SQ_DISTANCE_WAYS:
        for j in range(SQ_DISTANCE_WAYS):
            t = <double>x[f + j] - <double>c[f + j]
            part[j] += t * t
    for f in range(d_main, d):
        t = <double>x[f] - <double>c[f]
        total += t * t
    for j in range(SQ_DISTANCE_WAYS):
        total += part[j]
    return total


cdef _pack_panels(const floating[:, ::1] centers, bint dot_form):
    """The centres as the micro-kernels read them: ``(panels, base, shift)``.

    shift (d,) is subtracted from rows and centres: the mean of the centres in the dot form,
    zero in the direct form (which then sees the unchanged values). panels (n_panels, d,
    FASTKM_PANEL) holds centre p * FASTKM_PANEL + g minus the shift at [p, :, g], padded with
    zero centres up to a whole panel. base[j] is the score's constant term for centre j: half
    the squared norm of shifted centre j (computed in float64) in the dot form, zero in the
    direct form; infinite for the padding, so that it is never chosen.
    """
    dtype = np.float32 if floating is float else np.float64
    C = np.asarray(centers)
    k, d = C.shape
    n_panels = (k + FASTKM_PANEL - 1) // FASTKM_PANEL
    shift = np.zeros(d, dtype=dtype)
    if dot_form:
        shift[:] = C.astype(np.float64).mean(axis=0)
    shifted = np.zeros((n_panels * FASTKM_PANEL, d), dtype=dtype)
    shifted[:k] = C - shift
    base = np.full(n_panels * FASTKM_PANEL, np.inf, dtype=dtype)
    base[:k] = 0
    if dot_form:
        base[:k] = 0.5 * np.einsum("ij,ij->i", shifted[:k].astype(np.float64),
                                   shifted[:k].astype(np.float64))
    panels = np.ascontiguousarray(
        shifted.reshape(n_panels, FASTKM_PANEL, d).transpose(0, 2, 1))
    return panels, base, shift


def lloyd_pass(
        const floating[:, ::1] X,            # IN  (n, d) rows to assign
        const floating[::1] sample_weight,   # IN  (n,) non-negative weights
        const floating[:, ::1] centers,      # IN  (k, d) current centres
        int[::1] labels,                     # OUT (n,) nearest centre of each row
        double[:, ::1] sums,                 # OUT (k, d) weighted sum of the rows of each cluster
        double[::1] weight_sums,             # OUT (k,) summed weight of each cluster
        int n_threads=1,
):
    """One Lloyd pass: nearest centres, per-cluster weighted sums and weights, and inertia.

    ``sums`` and ``weight_sums`` are overwritten (not added to). Returns the inertia, the
    weighted sum of squared distances of the rows to their nearest centre.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef bint use_panels = d > MAX_UNROLLED_FEATURES
    cdef bint dot_form = d >= DOT_FORM_MIN_FEATURES
    cdef Py_ssize_t ways = _accumulator_ways(d)
    cdef Py_ssize_t n_chunks, chunk_rows, c
    _check_shapes(X, sample_weight, centers)
    if labels.shape[0] != n or sums.shape[0] != k or sums.shape[1] != d \
            or weight_sums.shape[0] != k:
        raise ValueError("lloyd_pass: output arrays do not match X and centers")
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n * k * d)
    cdef double[:, ::1] chunk_acc = _chunk_buffers(n_chunks, ways * k * (d + 1))
    cdef double[:, ::1] chunk_inertia = _chunk_buffers(n_chunks, 1)
    cdef floating[:, ::1] scratch = _scratch(X, n_threads)
    cdef floating[:, :, ::1] panels
    cdef floating[::1] base, shift
    cdef double inertia = 0

    if use_panels:
        panels, base, shift = _pack_panels(centers, dot_form)
        for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
            _lloyd_chunk_panels(&X[0, 0], &sample_weight[0], &centers[0, 0],
                                &panels[0, 0, 0], &base[0], &shift[0], k, d, dot_form,
                                c * chunk_rows, min(n, (c + 1) * chunk_rows), ways,
                                &scratch[threadid(), 0], &labels[0], &chunk_acc[c, 0],
                                &chunk_inertia[c, 0])
    else:
        for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
            _lloyd_chunk(&X[0, 0], &sample_weight[0], &centers[0, 0], k, d, c * chunk_rows,
                         min(n, (c + 1) * chunk_rows), ways, &scratch[threadid(), 0],
                         &labels[0], &chunk_acc[c, 0], &chunk_inertia[c, 0])

    _merge_chunk_sums(chunk_acc, n_chunks, ways, sums, weight_sums)
    for c in range(n_chunks):
        inertia += chunk_inertia[c, 0]
    return inertia


# ---------------------------------------------------------------------------------------------
# Bounded passes: the Lloyd pass with distance bounds (Hamerly 2010, "Making k-means even
# faster"; Newling and Fleuret 2016, "Fast k-means with accurate bounds", for Exponion)
#
# Hamerly keeps, per row, an upper bound u on the distance to its centre a and a lower bound
# on the distance to any other centre. When u is below the larger of the lower bound and
# half the distance from a to the nearest other centre, the row cannot change cluster and no
# distance is computed; otherwise it is compared with every centre.
#
# Exponion compares such a row only with the centres within 2 u + s of a (s: the distance
# from a to the nearest other centre): the nearest and second nearest centres lie in that
# ball by the triangle inequality. And it splits the lower bound in two: one on the distance
# to the row's second-nearest centre b, which drops only by b's own moves, and one on the
# distance to every other centre, which drops by the largest move among the centres listed
# near a, and is capped by how far the unlisted ones are. Colour clusters, packed close
# together, fail these bounds about half as often as Hamerly's one bound.
#
# The labels are those of the plain Lloyd pass (ties aside), and the sums are accumulated in
# the same order, so the centres are too.


cdef inline void _keep_three_nearest(
        const floating* dist,       # IN  (BLOCK_ROWS,) squared distances to centre j
        int j,
        floating* best,             # IN/OUT (BLOCK_ROWS,) smallest squared distance so far
        floating* second,           # IN/OUT (BLOCK_ROWS,) second smallest
        floating* third,            # IN/OUT (BLOCK_ROWS,) third smallest
        int* label,                 # IN/OUT (BLOCK_ROWS,) index of the smallest
        int* second_label,          # IN/OUT (BLOCK_ROWS,) index of the second smallest
) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(BLOCK_ROWS):
        # Plain selects, one per statement, so that the loop vectorizes.
        third[i] = min(third[i], max(second[i], dist[i]))
        second_label[i] = j if dist[i] < second[i] else second_label[i]
        second_label[i] = label[i] if dist[i] < best[i] else second_label[i]
        second[i] = min(second[i], max(best[i], dist[i]))
        label[i] = j if dist[i] < best[i] else label[i]
        best[i] = dist[i] if dist[i] < best[i] else best[i]


cdef inline void _block_three_nearest(
        const floating* block_t,    # IN  (d, BLOCK_ROWS) rows in lanes
        const floating* centers,    # IN  (k, d)
        Py_ssize_t k, Py_ssize_t d,
        floating* best,             # OUT (BLOCK_ROWS,) squared distance to the nearest centre
        floating* second,           # OUT (BLOCK_ROWS,) to the second nearest (inf if k = 1)
        floating* third,            # OUT (BLOCK_ROWS,) to the third nearest (inf if k < 3)
        int* label,                 # OUT (BLOCK_ROWS,) the nearest centre
        int* second_label,          # OUT (BLOCK_ROWS,) the second nearest
) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating dist[4 * BLOCK_ROWS]
    for i in range(BLOCK_ROWS):
        best[i] = INFINITY
        second[i] = INFINITY
        third[i] = INFINITY
        label[i] = 0
        second_label[i] = 0
    for j in range(0, k - 3, 4):
        _block_sq_distances_4(block_t, centers + j * d, d, dist)
        for i in range(4):
            _keep_three_nearest(dist + i * BLOCK_ROWS, <int>(j + i), best, second, third,
                                label, second_label)
    for j in range(k - k % 4, k):
        _block_sq_distances(block_t, centers + j * d, d, dist)
        _keep_three_nearest(dist, <int>j, best, second, third, label, second_label)


cdef inline floating _row_sq_distance(const floating* x, const floating* c,
                                      Py_ssize_t d) noexcept nogil:
    """Squared distance, summed in the order _block_sq_distances sums it (same rounding)."""
    cdef Py_ssize_t f
    cdef floating t, total = 0
    for f in range(d):
        t = x[f] - c[f]
        total += t * t
    return total


cdef inline Py_ssize_t _settle_pending(
        const floating* X, Py_ssize_t d, const floating* centers, Py_ssize_t k,
        const Py_ssize_t* rows,     # IN  (n_pending,) rows whose bounds failed
        Py_ssize_t n_pending,
        floating* block_t,          # scratch (d, BLOCK_ROWS)
        int* labels,                # OUT rows' nearest centre
        floating* upper,            # OUT rows' distance to it
        floating* lower,            # OUT rows' distance to the second nearest
        int* second_labels,         # OUT rows' second nearest centre (NULL: not kept)
        floating* lower_rest,       # OUT rows' distance to the third nearest (NULL: not kept)
) noexcept nogil:
    """Full nearest-centre search for up to BLOCK_ROWS scattered rows, in vector lanes.
    Returns how many of them changed centre."""
    cdef Py_ssize_t i, f, row, changed = 0
    cdef floating best[BLOCK_ROWS]
    cdef floating second[BLOCK_ROWS]
    cdef floating third[BLOCK_ROWS]
    cdef int label[BLOCK_ROWS]
    cdef int second_label[BLOCK_ROWS]
    for i in range(BLOCK_ROWS):
        row = rows[min(i, n_pending - 1)]
        for f in range(d):
            block_t[f * BLOCK_ROWS + i] = X[row * d + f]
    _block_three_nearest(block_t, centers, k, d, best, second, third, label, second_label)
    for i in range(n_pending):
        row = rows[i]
        changed += labels[row] != label[i]
        labels[row] = label[i]
        upper[row] = sqrt(best[i])
        lower[row] = sqrt(second[i])
        if second_labels != NULL:
            second_labels[row] = second_label[i]
            lower_rest[row] = sqrt(third[i])
    return changed


cdef inline bint _ball_search(
        const floating* x,          # IN  (d,) the row
        const floating* centers,    # IN  (k, d)
        Py_ssize_t d, Py_ssize_t k,
        int a,                      # IN  the row's current centre
        floating u_sq,              # IN  the row's squared distance to it
        floating gap,               # IN  an upper bound of the distance from a to the
                                    #     nearest other centre
        const floating* near_dist,  # IN  (n_near,) lower bounds of the distances from a to
                                    #     its nearest other centres, ascending; the centres
                                    #     not listed are farther than the last
        const int* near_index,      # IN  (n_near,) those centres
        Py_ssize_t n_near,
        int* label,                 # OUT the row's nearest centre
        floating* upper,            # OUT the row's distance to it
        int* second_label,          # OUT its second nearest centre
        floating* lower,            # OUT the row's distance to it
        floating* lower_rest,       # OUT a lower bound of its distance to any other centre
) noexcept nogil:
    """Exponion's search among the centres near the row's centre; False if the ball reaches
    past the listed ones (the caller then compares the row with every centre)."""
    cdef floating best = u_sq, second = INFINITY, third = INFINITY, dist, radius, u
    cdef int nearest = a, runner_up = a, j
    cdef bint nearer
    cdef Py_ssize_t m
    if n_near == 0:
        return False
    u = sqrt(u_sq)
    # Widened so that rounding in u and in the distances cannot leave a candidate out.
    radius = <floating>((2.0 * u + gap) * (1.0 + BALL_MARGIN))
    if near_dist[n_near - 1] <= radius and n_near < k - 1:
        return False
    for m in range(n_near):
        if near_dist[m] > radius:
            break
        j = near_index[m]
        dist = _row_sq_distance(x, centers + j * d, d)
        # Branch-free (which of two near centres is nearer is unpredictable); ties go to
        # the lower index, as in the full search.
        nearer = (dist < best) | ((dist == best) & (j < nearest))
        third = min(third, max(second, dist))
        runner_up = nearest if nearer else (j if dist < second else runner_up)
        second = min(second, max(best, dist))
        nearest = j if nearer else nearest
        best = min(best, dist)
    label[0] = nearest
    upper[0] = sqrt(best)
    second_label[0] = runner_up
    lower[0] = sqrt(second)
    # A centre outside the ball is farther than radius from a, so farther than
    # radius - u from the row.
    lower_rest[0] = min(<floating>sqrt(third),
                        <floating>((radius - u) * (1.0 - BALL_MARGIN)))
    return True


cdef inline Py_ssize_t _bounded_chunk_d(
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,)
        const floating* centers,             # IN  (k, d)
        const floating* near_dist,           # IN  (k, n_near) per centre, distances to its
                                             #     nearest other centres, ascending
        const int* near_index,               # IN  (k, n_near) those centres
        Py_ssize_t n_near,
        bint exponion,                       # IN  False: Hamerly
        const floating* half_gap,            # IN  (k,) half the distance to the nearest
                                             #     other centre, or less
        const floating* gap,                 # IN  (k,) that distance, or more
        const floating* shift,               # IN  (k,) how far each centre moved last update
        const floating* decay,               # IN  (k,) how much a row's bound on "any other
                                             #     centre" drops, by the row's centre
        const floating* reach,               # IN  (k,) the distance from each centre beyond
                                             #     which lie the centres decay ignores
        Py_ssize_t k, Py_ssize_t d,
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        Py_ssize_t ways,                     # IN  copies of the sums, a power of two
        floating* block_t,                   # scratch (d, BLOCK_ROWS)
        int* labels,                         # IN/OUT (n,) nearest centre
        floating* upper,                     # IN/OUT (n,) upper bound of the distance to it
        floating* lower,                     # IN/OUT (n,) lower bound of the distance to any
                                             #     other centre (Hamerly) or to the second
                                             #     nearest (Exponion)
        int* second_labels,                  # IN/OUT (n,) second nearest (Exponion; or NULL)
        floating* lower_rest,                # IN/OUT (n,) lower bound to any centre but the
                                             #     two (Exponion; or NULL)
        double* acc,                         # OUT (ways, k, d + 1) as in _lloyd_chunk_d
) noexcept nogil:
    """Returns how many rows changed centre."""
    cdef Py_ssize_t row, i, f, n_pending = 0, changed = 0
    cdef Py_ssize_t pending[BLOCK_ROWS]
    cdef floating bound, u, u_sq
    cdef double w
    cdef double* cluster
    cdef int j
    for row in range(start, stop):
        j = labels[row]
        u = upper[row] + shift[j]
        if exponion:
            lower[row] = lower[row] - shift[second_labels[row]]
            lower_rest[row] = min(lower_rest[row] - decay[j], reach[j] - u)
            bound = max(min(lower[row], lower_rest[row]), half_gap[j])
        else:
            lower[row] = lower[row] - decay[j]
            bound = max(lower[row], half_gap[j])
        if u > bound:
            u_sq = _row_sq_distance(X + row * d, centers + j * d, d)
            u = sqrt(u_sq)
            if u > bound:
                if exponion and _ball_search(
                        X + row * d, centers, d, k, j, u_sq, gap[j],
                        near_dist + j * BALL_NEIGHBOURS, near_index + j * BALL_NEIGHBOURS,
                        n_near, labels + row, upper + row, second_labels + row, lower + row,
                        lower_rest + row):
                    changed += labels[row] != j
                    continue
                pending[n_pending] = row
                n_pending += 1
                if n_pending == BLOCK_ROWS:
                    changed += _settle_pending(X, d, centers, k, pending, n_pending, block_t,
                                               labels, upper, lower, second_labels,
                                               lower_rest)
                    n_pending = 0
                continue
        upper[row] = u
    if n_pending:
        changed += _settle_pending(X, d, centers, k, pending, n_pending, block_t, labels,
                                   upper, lower, second_labels, lower_rest)
    # The same accumulation, in the same order, as _lloyd_chunk_d.
    for row in range(start, stop):
        i = (row - start) % BLOCK_ROWS
        w = sample_weight[row]
        cluster = acc + ((i & (ways - 1)) * k + labels[row]) * (d + 1)
        for f in range(d):
            cluster[f] += w * X[row * d + f]
        cluster[d] += w
    return changed


cdef Py_ssize_t _bounded_chunk(
        const floating* X, const floating* sample_weight, const floating* centers,
        const floating* near_dist, const int* near_index, Py_ssize_t n_near, bint exponion,
        const floating* half_gap, const floating* gap, const floating* shift,
        const floating* decay,
        const floating* reach, Py_ssize_t k, Py_ssize_t d, Py_ssize_t start, Py_ssize_t stop,
        Py_ssize_t ways, floating* block_t, int* labels, floating* upper, floating* lower,
        int* second_labels, floating* lower_rest, double* acc,
) noexcept nogil:
    """_bounded_chunk_d, compiled separately for colours (d = 3)."""
    if d == 3:
        return _bounded_chunk_d(X, sample_weight, centers, near_dist, near_index, n_near,
                                exponion, half_gap, gap, shift, decay, reach, k, 3, start,
                                stop, ways, block_t, labels, upper, lower, second_labels,
                                lower_rest, acc)
    return _bounded_chunk_d(X, sample_weight, centers, near_dist, near_index, n_near,
                            exponion, half_gap, gap, shift, decay, reach, k, d, start, stop,
                            ways, block_t, labels, upper, lower, second_labels, lower_rest,
                            acc)


cdef inline void _heap_replace_top(
        double* heap_dist,          # IN/OUT (size,) a max-heap of squared distances
        int* heap_index,            # IN/OUT (size,) their centres
        Py_ssize_t size,
        double dist, int index,     # IN  the entry that replaces the top
) noexcept nogil:
    cdef Py_ssize_t m = 0, child
    while True:
        child = 2 * m + 1
        if child >= size:
            break
        if child + 1 < size and heap_dist[child + 1] > heap_dist[child]:
            child += 1
        if heap_dist[child] <= dist:
            break
        heap_dist[m] = heap_dist[child]
        heap_index[m] = heap_index[child]
        m = child
    heap_dist[m] = dist
    heap_index[m] = index


cdef void _nearest_other_centres(
        const floating* centers,    # IN  (k, d)
        Py_ssize_t k, Py_ssize_t d,
        Py_ssize_t a,               # IN  the centre whose neighbours are listed
        Py_ssize_t n_near,          # IN  how many to list, 1 to min(k - 1, BALL_NEIGHBOURS)
        floating* near_dist,        # OUT (n_near,) their distances to centre a, ascending,
                                    #     rounded down
        int* near_index,            # OUT (n_near,) their indices
) noexcept nogil:
    """The n_near nearest by a max-heap of the best so far (O(k log n_near), not a sort of
    all k), in squared distances, so that only the listed ones need a square root."""
    cdef Py_ssize_t b, f, m, size = 0
    cdef double dist, t
    cdef double heap_dist[BALL_NEIGHBOURS]
    cdef int heap_index[BALL_NEIGHBOURS]
    for b in range(k):
        if b == a:
            continue
        dist = 0
        for f in range(d):
            t = <double>centers[a * d + f] - centers[b * d + f]
            dist += t * t
        if size < n_near:  # room left: sift the new one up
            m = size
            size += 1
            while m > 0 and heap_dist[(m - 1) // 2] < dist:
                heap_dist[m] = heap_dist[(m - 1) // 2]
                heap_index[m] = heap_index[(m - 1) // 2]
                m = (m - 1) // 2
            heap_dist[m] = dist
            heap_index[m] = <int>b
        elif dist < heap_dist[0]:  # nearer than the farthest kept: it replaces that one
            _heap_replace_top(heap_dist, heap_index, size, dist, <int>b)
    # Emptied farthest first into the lists from their ends: ascending order.
    while size:
        size -= 1
        near_dist[size] = <floating>(sqrt(heap_dist[0]) * (1.0 - BALL_MARGIN))
        near_index[size] = heap_index[0]
        _heap_replace_top(heap_dist, heap_index, size, heap_dist[size], heap_index[size])


cdef _bounded_pass(
        const floating[:, ::1] X, const floating[::1] sample_weight,
        const floating[:, ::1] centers, const floating[::1] shift, int[::1] labels,
        floating[::1] upper, floating[::1] lower, int* second_labels, floating* lower_rest,
        floating[:, ::1] table_centers, int[:, ::1] table_index, floating[:, ::1] table_dist,
        double[:, ::1] sums, double[::1] weight_sums, int n_threads, str name):
    """hamerly_pass (second_labels and lower_rest NULL) or exponion_pass (see those)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t ways = _accumulator_ways(d)
    cdef Py_ssize_t n_chunks, chunk_rows, c, j, m, f
    cdef bint exponion = second_labels != NULL, rebuild
    cdef floating max_shift = 0, other_max_shift = 0
    cdef double max_drift = 0, mean_gap = 0, t
    cdef int max_shift_centre = 0
    _check_shapes(X, sample_weight, centers)
    if labels.shape[0] != n or upper.shape[0] != n or lower.shape[0] != n \
            or shift.shape[0] != k or sums.shape[0] != k or sums.shape[1] != d \
            or weight_sums.shape[0] != k or table_centers.shape[0] != k \
            or table_centers.shape[1] != d or table_index.shape[0] != k \
            or table_index.shape[1] != BALL_NEIGHBOURS or table_dist.shape[0] != k \
            or table_dist.shape[1] != BALL_NEIGHBOURS:
        raise ValueError(f"{name}: array shapes do not match X and centers")
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n * d * BOUNDED_WORK_PER_ROW)
    cdef double[:, ::1] chunk_acc = _chunk_buffers(n_chunks, ways * k * (d + 1))
    cdef floating[:, ::1] scratch = _scratch(X, n_threads)
    # Hamerly needs only the nearest other centre (for the half gaps).
    cdef Py_ssize_t n_near = min(<Py_ssize_t>BALL_NEIGHBOURS if exponion else 1, k - 1)
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] near_dist = np.full((k, BALL_NEIGHBOURS), np.inf, dtype=dtype)
    cdef floating[::1] half_gap = np.full(k, np.inf, dtype=dtype)
    cdef floating[::1] gap = np.full(k, np.inf, dtype=dtype)
    cdef floating[::1] decay = np.empty(k, dtype=dtype)
    cdef floating[::1] reach = np.full(k, np.inf, dtype=dtype)
    cdef double[::1] drift = np.zeros(k)
    # A centre pair costs some 50 multiply-adds' time (the heap's branches).
    cdef int table_threads = _threads_for(k, n_threads, k * k * (d + 48))
    if n_near:
        # The neighbour lists are rebuilt only when the centres have drifted far from where
        # they were listed; meanwhile every listed distance is lowered by the most it can
        # have shrunk since (both ends' drifts), so the lists stay valid lower bounds.
        for j in range(k):
            for f in range(d):
                t = <double>centers[j, f] - table_centers[j, f]
                drift[j] += t * t
            drift[j] = sqrt(drift[j]) * (1.0 + BALL_MARGIN)
            if not drift[j] <= max_drift:  # (NaN, from table_centers' NaN, too)
                max_drift = drift[j]
            mean_gap += table_dist[j, 0] / k
        rebuild = not exponion or not (2 * max_drift <= TABLE_SLACK * mean_gap)
        if rebuild:
            for j in prange(k, nogil=True, schedule="static", num_threads=table_threads):
                _nearest_other_centres(&centers[0, 0], k, d, j, n_near, &table_dist[j, 0],
                                       &table_index[j, 0])
            table_centers[:, :] = centers
            drift[:] = 0
            max_drift = 0
        for j in range(k):
            for m in range(n_near):
                near_dist[j, m] = <floating>((table_dist[j, m] - drift[j] - max_drift)
                                             * (1.0 - BALL_MARGIN))
            half_gap[j] = max(<floating>0, <floating>(0.5 * near_dist[j, 0]))
            gap[j] = <floating>((table_dist[j, 0] + drift[j] + drift[table_index[j, 0]])
                                * (1.0 + 2 * BALL_MARGIN))
    for j in range(k):
        if shift[j] > max_shift:
            other_max_shift = max_shift
            max_shift = shift[j]
            max_shift_centre = <int>j
        elif shift[j] > other_max_shift:
            other_max_shift = shift[j]
    # The bound on "any other centre" of a row of centre a drops by the largest move among
    # the centres it covers. With Exponion's lists, those near a moved by at most decay[a];
    # any other one is farther than reach[a] from a, hence than reach[a] - u from the row.
    for j in range(k):
        if exponion and n_near < k - 1:
            decay[j] = 0
            for m in range(n_near):
                decay[j] = max(decay[j], shift[table_index[j, m]])
            reach[j] = near_dist[j, n_near - 1]
        else:
            decay[j] = other_max_shift if j == max_shift_centre else max_shift

    cdef Py_ssize_t[::1] chunk_changed = np.zeros(n_chunks, dtype=np.intp)
    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
        chunk_changed[c] = _bounded_chunk(
                       &X[0, 0], &sample_weight[0], &centers[0, 0], &near_dist[0, 0],
                       &table_index[0, 0], n_near, exponion, &half_gap[0], &gap[0],
                       &shift[0], &decay[0], &reach[0], k, d, c * chunk_rows,
                       min(n, (c + 1) * chunk_rows), ways, &scratch[threadid(), 0],
                       &labels[0], &upper[0], &lower[0], second_labels, lower_rest,
                       &chunk_acc[c, 0])

    _merge_chunk_sums(chunk_acc, n_chunks, ways, sums, weight_sums)
    return int(np.sum(chunk_changed))


def hamerly_pass(
        const floating[:, ::1] X,            # IN  (n, d) rows to assign
        const floating[::1] sample_weight,   # IN  (n,) non-negative weights
        const floating[:, ::1] centers,      # IN  (k, d) current centres
        const floating[::1] shift,           # IN  (k,) distance each centre moved since the
                                             #     bounds were last updated
        int[::1] labels,                     # IN/OUT (n,) nearest centre of each row
        floating[::1] upper,                 # IN/OUT (n,) upper bound of that distance
        floating[::1] lower,                 # IN/OUT (n,) lower bound to any other centre
        double[:, ::1] sums,                 # OUT (k, d) weighted sum of the rows of each cluster
        double[::1] weight_sums,             # OUT (k,) summed weight of each cluster
        int n_threads=1,
):
    """One Lloyd pass with Hamerly's bounds: the same labels, sums and weights.

    Returns how many rows changed label.

    To start (or restart) the bounds, pass ``upper = inf``, ``lower = 0``, any valid labels
    and ``shift = 0``. Rows whose bounds prove their centre is still the nearest are not
    compared with any centre; the others are compared with all of them.
    """
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t k = centers.shape[0]
    # Built afresh each pass: Hamerly needs only each centre's nearest other one.
    cdef floating[:, ::1] table_centers = np.full((k, centers.shape[1]), np.nan, dtype=dtype)
    cdef int[:, ::1] table_index = np.empty((k, BALL_NEIGHBOURS), dtype=np.int32)
    cdef floating[:, ::1] table_dist = np.empty((k, BALL_NEIGHBOURS), dtype=dtype)
    return _bounded_pass(X, sample_weight, centers, shift, labels, upper, lower, NULL, NULL,
                         table_centers, table_index, table_dist, sums, weight_sums,
                         n_threads, "hamerly_pass")


def exponion_pass(
        const floating[:, ::1] X,            # IN  (n, d) rows to assign
        const floating[::1] sample_weight,   # IN  (n,) non-negative weights
        const floating[:, ::1] centers,      # IN  (k, d) current centres
        const floating[::1] shift,           # IN  (k,) distance each centre moved since the
                                             #     bounds were last updated
        int[::1] labels,                     # IN/OUT (n,) nearest centre of each row
        floating[::1] upper,                 # IN/OUT (n,) upper bound of that distance
        int[::1] second_labels,              # IN/OUT (n,) second nearest centre of each row
        floating[::1] lower,                 # IN/OUT (n,) lower bound of the distance to it
        floating[::1] lower_rest,            # IN/OUT (n,) lower bound to any centre but those
                                             #     two
        floating[:, ::1] table_centers,      # IN/OUT (k, d) the centres where the neighbour
                                             #     lists were built (NaN: build them)
        int[:, ::1] table_index,             # IN/OUT (k, BALL_NEIGHBOURS) per centre, its
                                             #     nearest other centres
        floating[:, ::1] table_dist,         # IN/OUT (k, BALL_NEIGHBOURS) their distances then
        double[:, ::1] sums,                 # OUT (k, d) weighted sum of the rows of each cluster
        double[::1] weight_sums,             # OUT (k,) summed weight of each cluster
        int n_threads=1,
):
    """One Lloyd pass with Exponion's search and bounds: the same labels, sums and weights.

    Returns how many rows changed label.

    To start (or restart) the bounds, pass ``upper = inf``, ``lower = lower_rest = 0``, any
    valid labels and second labels, ``shift = 0`` and ``table_centers = NaN``. A row whose
    bounds fail is compared only with the centres near its own (up to BALL_NEIGHBOURS of
    them, listed per centre in O(k^2 d) whenever the centres have drifted far from where
    they were listed), or with all of them when its ball reaches past that list.
    """
    if second_labels.shape[0] != X.shape[0] or lower_rest.shape[0] != X.shape[0]:
        raise ValueError("exponion_pass: array shapes do not match X and centers")
    if X.shape[0] == 0:
        raise ValueError("exponion_pass: X has no rows")
    return _bounded_pass(X, sample_weight, centers, shift, labels, upper, lower,
                         &second_labels[0], &lower_rest[0], table_centers, table_index,
                         table_dist, sums, weight_sums, n_threads, "exponion_pass")


cdef void _merge_chunk_sums(
        const double[:, ::1] chunk_acc,      # IN  (n_chunks, >= ways * k * (d + 1)) as the
                                             #     chunk functions left them
        Py_ssize_t n_chunks, Py_ssize_t ways,
        double[:, ::1] sums,                 # OUT (k, d) weighted sums of all chunks
        double[::1] weight_sums,             # OUT (k,) summed weights of all chunks
) noexcept nogil:
    """Add the chunks' partial sums in chunk order, so that the result does not depend on
    which thread ran which chunk."""
    cdef Py_ssize_t k = sums.shape[0], d = sums.shape[1], c, way, j, f
    cdef const double* cluster
    sums[:, :] = 0
    weight_sums[:] = 0
    for c in range(n_chunks):
        for way in range(ways):
            for j in range(k):
                cluster = &chunk_acc[c, (way * k + j) * (d + 1)]
                for f in range(d):
                    sums[j, f] += cluster[f]
                weight_sums[j] += cluster[d]


# ---------------------------------------------------------------------------------------------
# Greedy k-means++ initialization


cdef inline void _candidates_chunk_d(
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,)
        const floating* candidates,          # IN  (L, d), L <= MAX_CANDIDATES
        Py_ssize_t n_candidates, Py_ssize_t d,
        const double* closest_sq,            # IN  (n,)
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        floating* block_t,                   # scratch (d, BLOCK_ROWS)
        double* potentials,                  # OUT (L,) zeroed, potential of each candidate
) noexcept nogil:
    cdef Py_ssize_t block_start, i, l, m, n_real
    cdef floating dist[4 * BLOCK_ROWS]
    cdef double lane_weight[BLOCK_ROWS]
    cdef double lane_closest[BLOCK_ROWS]
    # One running sum per candidate and lane: a single sum per candidate would be a chain
    # of dependent additions, four times slower than the distances themselves.
    cdef double lane_potential[MAX_CANDIDATES * BLOCK_ROWS]
    for i in range(n_candidates * BLOCK_ROWS):
        lane_potential[i] = 0
    for block_start from start <= block_start < stop by BLOCK_ROWS:
        n_real = _transpose_block(X, d, block_start, stop, block_t)
        for i in range(BLOCK_ROWS):  # lanes past the end weigh nothing
            lane_weight[i] = sample_weight[block_start + i] if i < n_real else 0
            lane_closest[i] = closest_sq[block_start + i] if i < n_real else 0
        for l in range(0, n_candidates - 3, 4):
            _block_sq_distances_4(block_t, candidates + l * d, d, dist)
            for m in range(4):
                for i in range(BLOCK_ROWS):
                    lane_potential[(l + m) * BLOCK_ROWS + i] += lane_weight[i] * min(
                        <double>dist[m * BLOCK_ROWS + i], lane_closest[i])
        for l in range(n_candidates - n_candidates % 4, n_candidates):
            _block_sq_distances(block_t, candidates + l * d, d, dist)
            for i in range(BLOCK_ROWS):
                lane_potential[l * BLOCK_ROWS + i] += lane_weight[i] * min(<double>dist[i],
                                                                           lane_closest[i])
    for l in range(n_candidates):
        for i in range(BLOCK_ROWS):
            potentials[l] += lane_potential[l * BLOCK_ROWS + i]


cdef void _candidates_chunk(
        const floating* X, const floating* sample_weight, const floating* candidates,
        Py_ssize_t n_candidates, Py_ssize_t d, const double* closest_sq,
        Py_ssize_t start, Py_ssize_t stop, floating* block_t, double* potentials,
) noexcept nogil:
    """_candidates_chunk_d, compiled separately for colours (d = 3)."""
    if d == 3:
        _candidates_chunk_d(X, sample_weight, candidates, n_candidates, 3, closest_sq,
                            start, stop, block_t, potentials)
    else:
        _candidates_chunk_d(X, sample_weight, candidates, n_candidates, d, closest_sq,
                            start, stop, block_t, potentials)


def kmeanspp_candidate_potentials(
        const floating[:, ::1] X,            # IN  (n, d)
        const floating[::1] sample_weight,   # IN  (n,)
        const floating[:, ::1] candidates,   # IN  (L, d) candidate centres
        const double[::1] closest_sq,        # IN  (n,) squared distance to the nearest chosen centre
        double[::1] potentials,              # OUT (L,) potential if each candidate were added
        int n_threads=1,
):
    """For each candidate, sum(w * min(closest_sq, |x - candidate|**2)) over the rows."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_candidates = candidates.shape[0]
    cdef Py_ssize_t n_chunks, chunk_rows, c, l
    _check_shapes(X, sample_weight, candidates)
    if closest_sq.shape[0] != n or potentials.shape[0] != n_candidates:
        raise ValueError("kmeanspp_candidate_potentials: array sizes do not match X")
    if n_candidates > MAX_CANDIDATES:
        raise ValueError(f"at most {MAX_CANDIDATES} candidates per call")
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n * n_candidates * d)
    cdef double[:, ::1] chunk_pot = _chunk_buffers(n_chunks, n_candidates)
    cdef floating[:, ::1] scratch = _scratch(X, n_threads)
    potentials[:] = 0

    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
        _candidates_chunk(&X[0, 0], &sample_weight[0], &candidates[0, 0], n_candidates, d,
                          &closest_sq[0], c * chunk_rows, min(n, (c + 1) * chunk_rows),
                          &scratch[threadid(), 0], &chunk_pot[c, 0])

    for c in range(n_chunks):
        for l in range(n_candidates):
            potentials[l] += chunk_pot[c, l]


cdef inline double _update_closest_chunk_d(
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,)
        const floating* center,              # IN  (d,)
        Py_ssize_t d,
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        floating* block_t,                   # scratch (d, BLOCK_ROWS)
        double* closest_sq,                  # IN/OUT (n,) rows [start, stop) updated
) noexcept nogil:
    cdef Py_ssize_t block_start, i, row, n_real
    cdef floating dist[BLOCK_ROWS]
    cdef double lane_total[BLOCK_ROWS]  # per lane, as in _candidates_chunk_d
    cdef double total = 0
    for i in range(BLOCK_ROWS):
        lane_total[i] = 0
    for block_start from start <= block_start < stop by BLOCK_ROWS:
        n_real = _transpose_block(X, d, block_start, stop, block_t)
        _block_sq_distances(block_t, center, d, dist)
        for i in range(n_real):
            row = block_start + i
            closest_sq[row] = min(<double>dist[i], closest_sq[row])
            lane_total[i] += sample_weight[row] * closest_sq[row]
    for i in range(BLOCK_ROWS):
        total += lane_total[i]
    return total


cdef double _update_closest_chunk(
        const floating* X, const floating* sample_weight, const floating* center,
        Py_ssize_t d, Py_ssize_t start, Py_ssize_t stop, floating* block_t,
        double* closest_sq,
) noexcept nogil:
    """_update_closest_chunk_d, compiled separately for colours (d = 3)."""
    if d == 3:
        return _update_closest_chunk_d(X, sample_weight, center, 3, start, stop, block_t,
                                       closest_sq)
    return _update_closest_chunk_d(X, sample_weight, center, d, start, stop, block_t,
                                   closest_sq)


def kmeanspp_update_closest(
        const floating[:, ::1] X,            # IN  (n, d)
        const floating[::1] sample_weight,   # IN  (n,)
        const floating[:, ::1] center,       # IN  (1, d) the centre just chosen
        double[::1] closest_sq,              # IN/OUT (n,) squared distance to the nearest centre
        double[::1] chunk_potentials,        # OUT (n_chunks,) sum(w * closest_sq) per row chunk
        int n_threads=1,
):
    """closest_sq = min(closest_sq, |x - center|**2), and its weighted sum per row chunk.

    The per-chunk sums (chunks as in ``row_chunks``) let the caller draw the next centre in
    proportion to ``w * closest_sq`` without a cumulative sum over all rows.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef Py_ssize_t n_chunks, chunk_rows, c
    _check_shapes(X, sample_weight, center)
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n * d)
    if closest_sq.shape[0] != n or chunk_potentials.shape[0] != n_chunks:
        raise ValueError("kmeanspp_update_closest: array sizes do not match X")
    cdef floating[:, ::1] scratch = _scratch(X, n_threads)

    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
        chunk_potentials[c] = _update_closest_chunk(
            &X[0, 0], &sample_weight[0], &center[0, 0], d, c * chunk_rows,
            min(n, (c + 1) * chunk_rows), &scratch[threadid(), 0], &closest_sq[0])


def kmeanspp_draw_rows(
        const floating[::1] sample_weight,   # IN  (n,)
        const double[::1] closest_sq,        # IN  (n,) or None: draw by weight alone
        const double[::1] chunk_mass,        # IN  (n_chunks,) sum of the rows' masses per
                                             #     row chunk (as kmeanspp_update_closest)
        const double[::1] draws,             # IN  (m,) uniform in [0, chunk_mass.sum())
        Py_ssize_t[::1] rows,                # OUT (m,) the rows drawn
):
    """Rows drawn with probability proportional to their mass, w * closest_sq (or w).

    A draw picks its chunk from the running sum of the chunk masses, then its row from a
    running sum over that chunk only (the first row where it exceeds the draw), so no pass
    sums all rows. A row of zero mass is never returned: the last row of positive mass
    before it is, or else the chunk's first.
    """
    cdef Py_ssize_t n = sample_weight.shape[0], n_chunks, chunk_rows
    cdef Py_ssize_t t, c, i, start, stop, row, last_positive
    cdef double below, running, mass
    _row_chunks(n, &n_chunks, &chunk_rows)
    cdef bint weighted_only = closest_sq is None
    if chunk_mass.shape[0] != n_chunks or rows.shape[0] != draws.shape[0] or \
            (not weighted_only and closest_sq.shape[0] != n):
        raise ValueError("kmeanspp_draw_rows: array sizes do not match")
    with nogil:
        for t in range(draws.shape[0]):
            running = 0
            c = 0
            while c < n_chunks - 1 and running + chunk_mass[c] <= draws[t]:
                running = running + chunk_mass[c]
                c = c + 1
            if chunk_mass[c] <= 0:  # rounding landed the draw on an empty chunk's edge
                while c > 0 and chunk_mass[c] <= 0:
                    c = c - 1
                running = 0
                for i in range(c):
                    running = running + chunk_mass[i]
            below = draws[t] - running
            start = c * chunk_rows
            stop = min(n, start + chunk_rows)
            running = 0
            row = stop - 1
            last_positive = -1
            for i in range(start, stop):
                mass = <double>sample_weight[i] if weighted_only else \
                    <double>sample_weight[i] * closest_sq[i]
                running = running + mass
                if mass > 0:
                    last_positive = i
                if running > below:
                    row = i
                    break
            if last_positive < 0:
                for i in range(start, stop):
                    if (<double>sample_weight[i] if weighted_only else
                            <double>sample_weight[i] * closest_sq[i]) > 0:
                        last_positive = i
                        break
            rows[t] = last_positive


# ---------------------------------------------------------------------------------------------
# Distances for transform


def sq_distances(
        const floating[:, ::1] X,            # IN  (n, d)
        const floating[:, ::1] centers,      # IN  (k, d)
        floating[:, ::1] out,                # OUT (n, k) squared distances
        int n_threads=1,
):
    """Squared Euclidean distance of every row to every centre (used by ``transform``)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t n_blocks = (n + BLOCK_ROWS - 1) // BLOCK_ROWS
    cdef Py_ssize_t b, i, j, n_real
    cdef floating* block_t
    cdef floating* dist
    if centers.shape[1] != d or out.shape[0] != n or out.shape[1] != k:
        raise ValueError("sq_distances: array shapes do not match")
    n_threads = _threads_for(n_blocks, n_threads, n * k * d)
    cdef floating[:, ::1] scratch = _scratch(X, n_threads, extra=BLOCK_ROWS)
    for b in prange(n_blocks, nogil=True, schedule="static", num_threads=n_threads):
        block_t = &scratch[threadid(), 0]
        dist = block_t + d * BLOCK_ROWS
        n_real = _transpose_block(&X[0, 0], d, b * BLOCK_ROWS, n, block_t)
        for j in range(k):
            _block_sq_distances(block_t, &centers[j, 0], d, dist)
            for i in range(n_real):
                out[b * BLOCK_ROWS + i, j] = dist[i]


cdef _check_shapes(const floating[:, ::1] X, const floating[::1] sample_weight,
                   const floating[:, ::1] centers):
    if sample_weight.shape[0] != X.shape[0]:
        raise ValueError("sample_weight must have one entry per row of X")
    if centers.shape[1] != X.shape[1]:
        raise ValueError("centers must have as many columns as X")
    if centers.shape[0] < 1:
        raise ValueError("at least one centre is needed")


cdef inline int _threads_for(Py_ssize_t n_chunks, int n_threads, Py_ssize_t work):
    """Threads for a pass of ``work`` multiply-adds over ``n_chunks`` chunks.

    No more threads than chunks, nor than MIN_WORK_PER_THREAD allows: waking a team costs
    more than a small pass takes, and far more on a loaded machine, where a busy-waiting
    thread steals the core of the one doing the work. The chunks, hence the results, do not
    depend on this.
    """
    if n_threads < 1:
        raise ValueError(f"n_threads must be at least 1, got {n_threads}")
    return <int>max(1, min(<Py_ssize_t>n_threads, n_chunks, work // MIN_WORK_PER_THREAD))


cdef _chunk_buffers(Py_ssize_t n_chunks, Py_ssize_t size):
    """Zeroed (n_chunks, size) float64 buffers, each row padded to its own cache lines.

    Neighbouring chunks run on different threads; sharing a cache line would make every
    update of one stall the other (false sharing).
    """
    cdef Py_ssize_t padded = (size + 2 * CACHE_LINE_DOUBLES - 1) // CACHE_LINE_DOUBLES \
        * CACHE_LINE_DOUBLES
    return np.zeros((max(n_chunks, 1), padded), dtype=np.float64)


cdef _scratch(const floating[:, ::1] X, int n_threads, Py_ssize_t extra=0):
    """One (d, BLOCK_ROWS) transposition buffer per thread, plus ``extra`` values."""
    if n_threads < 1:
        raise ValueError(f"n_threads must be at least 1, got {n_threads}")
    dtype = np.float32 if floating is float else np.float64
    return np.empty((n_threads, X.shape[1] * BLOCK_ROWS + extra), dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Colour quantization of 8-bit RGB images (fastkm.image)

cdef extern from *:
    """
    /* Relaxed atomic increment: histogram counts are integers, so the order in which threads
       add them does not change the result. Serial builds need no atomics. */
    #if defined(_OPENMP) && (defined(__GNUC__) || defined(__clang__))
    #define fastkm_atomic_increment(p) __atomic_fetch_add((p), 1u, __ATOMIC_RELAXED)
    #elif defined(_OPENMP)
    #define fastkm_atomic_increment(p) _Pragma("omp atomic") (*(p))++
    #else
    #define fastkm_atomic_increment(p) ((*(p))++)
    #endif
    """
    void fastkm_atomic_increment(unsigned int* counter) noexcept nogil

ctypedef unsigned char uint8_t
ctypedef unsigned int uint32_t

cdef enum:
    RGB_KEYS = 1 << 24
    PIXEL_BLOCK = 4096


cdef inline uint32_t _rgb_key(const uint8_t* rgb) noexcept nogil:
    return (<uint32_t>rgb[0] << 16) | (<uint32_t>rgb[1] << 8) | rgb[2]


def rgb_histogram(
        const uint8_t[:, ::1] rgb,           # IN  (n, 3) pixels
        uint32_t[::1] counts,                # IN/OUT (2**24,) pixel count per 24-bit colour
        int n_threads=1,
):
    """Add the pixels of ``rgb`` to ``counts``, indexed by ``r << 16 | g << 8 | b``."""
    cdef Py_ssize_t n = rgb.shape[0], n_blocks = (n + PIXEL_BLOCK - 1) // PIXEL_BLOCK
    cdef Py_ssize_t b, i
    if rgb.shape[1] != 3 or counts.shape[0] != RGB_KEYS:
        raise ValueError("rgb_histogram: expected (n, 3) pixels and 2**24 counters")
    n_threads = _threads_for(n_blocks, n_threads, n * 4)
    for b in prange(n_blocks, nogil=True, schedule="static", num_threads=n_threads):
        for i in range(b * PIXEL_BLOCK, min(n, (b + 1) * PIXEL_BLOCK)):
            fastkm_atomic_increment(&counts[_rgb_key(&rgb[i, 0])])


def remap_rgb(
        const uint8_t[:, ::1] rgb,           # IN  (n, 3) pixels
        const uint8_t[::1] lookup,           # IN  (2**24,) palette index of each 24-bit colour
        uint8_t[::1] indices,                # OUT (n,) palette index of each pixel
        int n_threads=1,
):
    """indices[i] = lookup[key of pixel i]: every pixel through the colour lookup table."""
    cdef Py_ssize_t n = rgb.shape[0], n_blocks = (n + PIXEL_BLOCK - 1) // PIXEL_BLOCK
    cdef Py_ssize_t b, i
    if rgb.shape[1] != 3 or lookup.shape[0] != RGB_KEYS or indices.shape[0] != n:
        raise ValueError("remap_rgb: array shapes do not match")
    n_threads = _threads_for(n_blocks, n_threads, n * 4)
    for b in prange(n_blocks, nogil=True, schedule="static", num_threads=n_threads):
        for i in range(b * PIXEL_BLOCK, min(n, (b + 1) * PIXEL_BLOCK)):
            indices[i] = lookup[_rgb_key(&rgb[i, 0])]


cdef inline int _nearest_colour(const float[:, ::1] palette, float r, float g,
                                float b) noexcept nogil:
    """Index of the palette colour nearest to (r, g, b); ties go to the lowest index."""
    cdef Py_ssize_t j
    cdef int best_j = 0
    cdef float dist, best = INFINITY, dr, dg, db
    for j in range(palette.shape[0]):
        dr = r - palette[j, 0]
        dg = g - palette[j, 1]
        db = b - palette[j, 2]
        dist = dr * dr + dg * dg + db * db
        if dist < best:
            best = dist
            best_j = <int>j
    return best_j


def dither_rgb(
        const uint8_t[:, :, ::1] image,      # IN  (h, w, 3) pixels
        const uint8_t[:, ::1] skip,          # IN  (h, w) 1 where a pixel is not dithered
                                             #     (transparent): it passes no error on
        const float[:, ::1] palette,         # IN  (K, 3) palette colours, 0-255
        const float[:, ::1] acceptance,      # IN  (h, w) share of the incoming error each
                                             #     pixel takes, in [0, 1]
        short[::1] nearest,                  # IN/OUT (2**24,) nearest palette index of each
                                             #     24-bit colour, -1 where not known yet
        float strength,                      # IN  share of its error a pixel passes on
        float max_error,                     # IN  errors longer than this are shrunk
        uint8_t[:, ::1] indices,             # OUT (h, w) palette index of each pixel
):
    """Floyd-Steinberg error diffusion in serpentine order, with the error held in check.

    Each pixel adds ``acceptance`` times the error its neighbours passed to it, is mapped to
    the nearest palette colour (through the ``nearest`` cache, filled as colours appear),
    and passes ``strength`` times its new error on (7/16 ahead, 3/16, 5/16 and 1/16 on the
    next row). An error longer than ``max_error`` is shrunk to 3/4 first, so that one bad
    match does not streak across the image. Sequential (error diffusion is), deterministic.
    """
    cdef Py_ssize_t h = image.shape[0], w = image.shape[1]
    cdef Py_ssize_t y, x, step, c, forward
    cdef float colour[3]
    cdef float error[3]
    cdef float length_sq, share
    cdef int key, j
    if image.shape[2] != 3 or palette.shape[1] != 3 or palette.shape[0] < 1 \
            or palette.shape[0] > 32767 or nearest.shape[0] != RGB_KEYS \
            or skip.shape[0] != h or skip.shape[1] != w \
            or acceptance.shape[0] != h or acceptance.shape[1] != w \
            or indices.shape[0] != h or indices.shape[1] != w:
        raise ValueError("dither_rgb: array shapes do not match")
    # Error carried into this row and the next, with one guard column at each end.
    current_arr = np.zeros((w + 2, 3), dtype=np.float32)
    following_arr = np.zeros((w + 2, 3), dtype=np.float32)
    cdef float[:, ::1] current = current_arr
    cdef float[:, ::1] following = following_arr
    cdef float[:, ::1] swap
    cdef float max_error_sq = max_error * max_error
    with nogil:
        for y in range(h):
            forward = 1 if y % 2 == 0 else -1
            for step in range(w):
                x = step if forward == 1 else w - 1 - step
                if skip[y, x]:
                    continue
                for c in range(3):
                    colour[c] = min(255.0, max(0.0, image[y, x, c]
                                               + acceptance[y, x] * current[x + 1, c]))
                key = ((<int>(colour[0] + 0.5)) << 16) | ((<int>(colour[1] + 0.5)) << 8) \
                    | (<int>(colour[2] + 0.5))
                j = nearest[key]
                if j < 0:
                    j = _nearest_colour(palette, colour[0], colour[1], colour[2])
                    nearest[key] = <short>j
                indices[y, x] = <uint8_t>j
                length_sq = 0
                for c in range(3):
                    error[c] = colour[c] - palette[j, c]
                    length_sq = length_sq + error[c] * error[c]
                share = strength * (0.75 if length_sq > max_error_sq else 1.0) / 16
                for c in range(3):
                    current[x + 1 + forward, c] += 7 * share * error[c]
                    following[x + 1 - forward, c] += 3 * share * error[c]
                    following[x + 1, c] += 5 * share * error[c]
                    following[x + 1 + forward, c] += share * error[c]
            swap = current
            current = following
            following = swap
            following[:, :] = 0
