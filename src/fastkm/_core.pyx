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
  thread (the kernels that reorder rows, distinct_rows and zorder_sort, also O(n); and
  filter_pass needs the tree of filter_tree, O(n / 32 x d)).

Rows go in vector lanes: a block of ``BLOCK_ROWS`` rows is transposed into a per-thread
buffer, then each centre is compared with the whole block at once. The comparisons are
branchless so that the compiler vectorizes them. Distances are computed directly as
sum((x - c)**2), except in ``lloyd_pass`` for d > 4, which compares blocks with panels of
centres in register-blocked C micro-kernels and finds the nearest centre with the
dot-product form (see "Lloyd for d > 4" below); its inertia and sums are still computed
directly. ``yinyang_pass``, and the full searches of ``hamerly_pass`` and ``exponion_pass``,
score with the same arithmetic as ``lloyd_pass``.
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY, sqrt
from libc.float cimport DBL_EPSILON, DBL_MIN, FLT_EPSILON, FLT_MIN
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

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

    fastkm_block_nearest_{f,d}(block_t, panels, bases, n_panels, d, label) compares the
    FASTKM_BLOCK_ROWS rows of a transposed block with the packed panels of FASTKM_PANEL
    centres each, panel by panel (centre indices p * FASTKM_PANEL + g): for each row r, from
    best[r] = inf, and centre j = p * FASTKM_PANEL + g, in that order,

        x_f = block_t[f * FASTKM_BLOCK_ROWS + r], c_f = panels[(p * d + f) * FASTKM_PANEL + g]
        score = bases[j] - sum over f of x_f * c_f        (dot-product form)
        if score < best[r]: best[r] = score, label[r] = j

    with the sum taken in feature order (FMAs where the ISA has them), so ties go to the
    lowest index. The accumulators are local variables of GCC/Clang vector types, so
    the compiler keeps them in registers for the whole feature loop; written with arrays (as
    Cython does), gcc spills part of them to the stack and reloads them every feature. The
    panel width fits the register file of each level: 2 row vectors x FASTKM_PANEL centres
    accumulators plus the two row vectors and a broadcast centre value. The scores never
    leave the registers either: the argmin update is done here, branchless. */
    #define FASTKM_BLOCK_ROWS 32
    /* acc + a * b with one rounding where the ISA has an FMA (as the compiler contracts the
    vector kernels' multiply-adds there), two elsewhere: every scalar accumulation that must
    give a vector kernel's scores bit for bit goes through it, since left to itself gcc may
    vectorize the products of an in-order sum and add them unfused. FASTKM_MADD(T): the one
    for type T (float or double). */
    #if defined(__FMA__)
    #define FASTKM_MADD_F(a, b, acc) __builtin_fmaf((a), (b), (acc))
    #define FASTKM_MADD_D(a, b, acc) __builtin_fma((a), (b), (acc))
    #else
    #define FASTKM_MADD_F(a, b, acc) ((acc) + (a) * (b))
    #define FASTKM_MADD_D(a, b, acc) ((acc) + (a) * (b))
    #endif
    #define FASTKM_MADD_float FASTKM_MADD_F
    #define FASTKM_MADD_double FASTKM_MADD_D
    #define FASTKM_MADD(T) FASTKM_MADD_##T
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

    /* acc += x * c for a vector x and the scalar c at its address, with c broadcast by the
    multiply-add's own load where AVX-512 has one ({1to16}, {1to8}): left to the compiler,
    each centre's value was broadcast into a register by an instruction of its own (one
    for every two multiply-adds), which took execution ports from them. The same fused
    multiply-add either way, so the same scores. */
    #if defined(__AVX512F__) && (defined(__GNUC__) || defined(__clang__))
    #define FASTKM_MADD_BROADCAST(T, ACC, X, C)                                               \\
        do {                                                                                  \\
            if (sizeof(T) == 4)                                                               \\
                __asm__("vfmadd231ps %[c]%{1to16%}, %[x], %[acc]"                             \\
                        : [acc] "+v"(ACC) : [x] "v"(X), [c] "m"(C));                          \\
            else                                                                              \\
                __asm__("vfmadd231pd %[c]%{1to8%}, %[x], %[acc]"                              \\
                        : [acc] "+v"(ACC) : [x] "v"(X), [c] "m"(C));                          \\
        } while (0)
    #else
    #define FASTKM_MADD_BROADCAST(T, ACC, X, C) ((ACC) += (X) * (C))
    #endif

    /* The accumulation both panel kernels share (fastkm_block_nearest and
    fastkm_panel_scores, so their scores are bit-identical): rows r0 .. r0 + 2W - 1 of
    block_t against the panel's centres, in feature order, into acc0 and acc1: dot products,
    or with DIRECT (only fastkm_panel_scores_direct, for Yinyang at d <= 4) squared
    differences. */
    #define FASTKM_PANEL_ACCUMULATE(T, DIRECT)                                                 \\
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
                        FASTKM_MADD_BROADCAST(T, acc0[g], x0, c[g]);                          \\
                        FASTKM_MADD_BROADCAST(T, acc1[g], x1, c[g]);                          \\
                    }                                                                         \\
                }                                                                             \\
                x += FASTKM_BLOCK_ROWS;                                                       \\
                c += FASTKM_PANEL;                                                            \\
            }

    /* Panel p of a block's search: its centres' values, their constant terms and the index
    of its first centre. */
    #define FASTKM_PANEL_POINTERS(T)                                                          \\
        const T* panel = panels + p * d * FASTKM_PANEL;                                       \\
        const T* base = bases + p * FASTKM_PANEL;                                             \\
        int first = (int)(p * FASTKM_PANEL);

    /* IT: the integer type as wide as T (the type of T's comparison masks). vec: W values
       of T in one register; ivec: their comparison masks; ivec32: W labels. */
    #define FASTKM_PANEL_TYPES(T, IT)                                                         \\
        typedef T vec __attribute__((vector_size(FASTKM_VBYTES)));                            \\
        typedef IT ivec __attribute__((vector_size(FASTKM_VBYTES)));                          \\
        enum { W = FASTKM_VBYTES / (int)sizeof(T) };                                          \\
        typedef int ivec32 __attribute__((vector_size(W * sizeof(int))));
    #define FASTKM_DEFINE_BLOCK_NEAREST(NAME, T, IT)                                          \\
    __attribute__((noinline)) /* keeps it visible to perf */                                  \\
    static void NAME(const T* block_t, const T* panels, const T* bases, Py_ssize_t n_panels,  \\
                     Py_ssize_t d, int* label) {                                              \\
        FASTKM_PANEL_TYPES(T, IT)                                                             \\
        for (int r0 = 0; r0 < FASTKM_BLOCK_ROWS; r0 += 2 * W) {                               \\
            /* The lowest scores and their labels stay in registers from panel to panel. */   \\
            vec b0 = (vec){0} + (T)INFINITY, b1 = b0;                                         \\
            ivec l0 = (ivec){0}, l1 = (ivec){0};                                              \\
            for (Py_ssize_t p = 0; p < n_panels; p++) { /* in index order */                  \\
                FASTKM_PANEL_POINTERS(T)                                                      \\
                FASTKM_PANEL_ACCUMULATE(T, 0)                                                 \\
                _Pragma("GCC unroll 16")                                                      \\
                for (int g = 0; g < FASTKM_PANEL; g++) { /* ties keep the lowest index */     \\
                    vec s0 = base[g] - acc0[g], s1 = base[g] - acc1[g];                       \\
                    ivec m0 = s0 < b0, m1 = s1 < b1; /* all ones where the score is lower */  \\
                    ivec j = (ivec){0} + (IT)(first + g);                                     \\
                    b0 = (vec)(((ivec)s0 & m0) | ((ivec)b0 & ~m0));                           \\
                    b1 = (vec)(((ivec)s1 & m1) | ((ivec)b1 & ~m1));                           \\
                    l0 = (j & m0) | (l0 & ~m0);                                               \\
                    l1 = (j & m1) | (l1 & ~m1);                                               \\
                }                                                                             \\
            }                                                                                 \\
            ivec32 l32 = __builtin_convertvector(l0, ivec32);                                 \\
            __builtin_memcpy(label + r0, &l32, sizeof(ivec32));                               \\
            l32 = __builtin_convertvector(l1, ivec32);                                        \\
            __builtin_memcpy(label + r0 + W, &l32, sizeof(ivec32));                           \\
        }                                                                                     \\
    }
    #else
    /* Portable fallback: the same sums in the same order, left to the compiler. */
    #define FASTKM_VECTOR_EXTENSIONS 0
    #define FASTKM_PANEL 8
    /* dots[g * FASTKM_BLOCK_ROWS + r]: the block's row r times the panel's centre g. */
    #define FASTKM_PORTABLE_DOTS(T)                                                           \\
        T dots[FASTKM_PANEL * FASTKM_BLOCK_ROWS];                                             \\
        for (int i = 0; i < FASTKM_PANEL * FASTKM_BLOCK_ROWS; i++) dots[i] = 0;               \\
        for (Py_ssize_t f = 0; f < d; f++)                                                    \\
            for (int g = 0; g < FASTKM_PANEL; g++)                                            \\
                for (int r = 0; r < FASTKM_BLOCK_ROWS; r++)                                   \\
                    dots[g * FASTKM_BLOCK_ROWS + r] = FASTKM_MADD(T)(                         \\
                        block_t[f * FASTKM_BLOCK_ROWS + r], panel[f * FASTKM_PANEL + g],      \\
                        dots[g * FASTKM_BLOCK_ROWS + r]);
    /* The block's rows against every panel, in index order: UPDATE for each row r and
    centre j, with its score (best[r] = inf and label[r] = 0 first). */
    #define FASTKM_PORTABLE_PANELS(T, UPDATE)                                                 \\
        for (int r = 0; r < FASTKM_BLOCK_ROWS; r++) {                                         \\
            best[r] = (T)INFINITY;                                                            \\
            label[r] = 0;                                                                     \\
        }                                                                                     \\
        for (Py_ssize_t p = 0; p < n_panels; p++) {                                           \\
            const T* panel = panels + p * d * FASTKM_PANEL;                                   \\
            FASTKM_PORTABLE_DOTS(T)                                                           \\
            for (int g = 0; g < FASTKM_PANEL; g++)                                            \\
                for (int r = 0; r < FASTKM_BLOCK_ROWS; r++) {                                 \\
                    int j = (int)(p * FASTKM_PANEL + g);                                      \\
                    T score = bases[j] - dots[g * FASTKM_BLOCK_ROWS + r];                     \\
                    UPDATE                                                                    \\
                }                                                                             \\
        }
    #define FASTKM_DEFINE_BLOCK_NEAREST(NAME, T, IT)                                          \\
    static void NAME(const T* block_t, const T* panels, const T* bases, Py_ssize_t n_panels,  \\
                     Py_ssize_t d, int* label) {                                              \\
        T best[FASTKM_BLOCK_ROWS];                                                            \\
        FASTKM_PORTABLE_PANELS(T,                                                             \\
            label[r] = score < best[r] ? j : label[r];                                        \\
            best[r] = score < best[r] ? score : best[r];)                                     \\
    }
    #endif
    /* fastkm_transpose_shifted_{f,d}(X, d, rows, n_real, shift, block_t): block_t[f, i] =
    X[r(min(i, n_real - 1)), f] - shift[f] for the FASTKM_BLOCK_ROWS rows of a block, X's
    rows being d apart, with r(i) = rows[i], or i where rows is NULL. Element by element,
    the stores go FASTKM_BLOCK_ROWS apart, and at d = 128 that took a tenth of the pass;
    with vector shuffles, square tiles of LANES rows x LANES features are transposed in
    registers: log2(LANES) rounds of interleaving vector i with vector i + LANES / 2 turn
    rows into columns. */
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
                    if (rows) row = rows[row];                                                \\
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
    static void NAME(const T* X, Py_ssize_t d, const Py_ssize_t* rows, Py_ssize_t n_real,    \\
                     const T* shift, T* block_t) {                                            \\
        Py_ssize_t f0 = 0;                                                                    \\
        FASTKM_TRANSPOSE_TILES(T, LANES)                                                      \\
        FASTKM_TRANSPOSE_TILES(T, HALF)                                                       \\
        for (int i = 0; i < FASTKM_BLOCK_ROWS; i++) { /* features left over, if any */       \\
            Py_ssize_t r = i < n_real ? i : n_real - 1;                                       \\
            const T* row = X + (rows ? rows[r] : r) * d;                                      \\
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
    #define fastkm_prefetch_near(p) __builtin_prefetch((p), 0, 3)
    #define fastkm_prefetch_write(p) __builtin_prefetch((p), 1, 3)
    #else
    #define fastkm_prefetch(p) ((void)(p))
    #define fastkm_prefetch_near(p) ((void)(p))
    #define fastkm_prefetch_write(p) ((void)(p))
    #endif
    FASTKM_DEFINE_BLOCK_NEAREST(fastkm_block_nearest_f, float, int)
    FASTKM_DEFINE_BLOCK_NEAREST(fastkm_block_nearest_d, double, long long)
    """
    enum: FASTKM_PANEL
    enum: FASTKM_BLOCK_ROWS
    int FASTKM_VECTOR_EXTENSIONS
    void fastkm_prefetch(const void* address) noexcept nogil
    void fastkm_prefetch_near(const void* address) noexcept nogil
    void fastkm_prefetch_write(const void* address) noexcept nogil
    void fastkm_transpose_shifted_f(const float* X, Py_ssize_t d, const Py_ssize_t* rows,
                                    Py_ssize_t n_real, const float* shift,
                                    float* block_t) noexcept nogil
    void fastkm_transpose_shifted_d(const double* X, Py_ssize_t d, const Py_ssize_t* rows,
                                    Py_ssize_t n_real, const double* shift,
                                    double* block_t) noexcept nogil
    void fastkm_block_nearest_f(const float* block_t, const float* panels,
                                const float* bases, Py_ssize_t n_panels, Py_ssize_t d,
                                int* label) noexcept nogil
    void fastkm_block_nearest_d(const double* block_t, const double* panels,
                                const double* bases, Py_ssize_t n_panels, Py_ssize_t d,
                                int* label) noexcept nogil



cdef enum:
    # Rows compared with a centre at once; a multiple of every vector width in use.
    BLOCK_ROWS = 32
    # Row chunks: at most MAX_CHUNKS per call, of about MIN_CHUNK_ROWS rows or more (at least
    # a quarter of that). All are constants so that the chunking, and thus every sum, depends
    # on the number of rows only.
    MIN_CHUNK_ROWS = 2048
    MAX_CHUNKS = 64
    # Above one chunk, a multiple of this many (MAX_CHUNKS is one): 2 or 4 threads then get
    # equal shares of a small input (MNIST's 5000 rows made 3 chunks, 2 of them on one thread
    # of two).
    CHUNK_MULTIPLE = 4
    # See _accumulator_ways.
    ACCUMULATOR_WAYS = 4
    # k-means++ candidates scored per pass (2 + ln k of them: 64 covers any k).
    MAX_CANDIDATES = 64
    # From this many features k-means++'s passes take the rows where they lie
    # (fastkm_row_sq_distances), below in transposed blocks (which vectorize over rows).
    ROW_MAJOR_MIN_FEATURES = 32
    # Multiply-adds a thread must get before a pass uses it (about a quarter millisecond).
    MIN_WORK_PER_THREAD = 1 << 20
    # A guess at a bounded pass's work per row and feature (bounds, some distances).
    BOUNDED_WORK_PER_ROW = 8
    # Exponion: nearest other centres listed per centre for the ball search.
    BALL_NEIGHBOURS = 32
    # Exponion for d > 4: a ball search compares a row with its candidates one by one, each
    # costing about as much as this many centres of the full search in panels (blobs 1M x 8,
    # k = 100: 8 to 32 equally good, no limit 4% slower over 10 iterations); balls holding
    # more than k / BALL_SEARCH_SHARE candidates are searched in full instead.
    BALL_SEARCH_SHARE = 16
    # Rows _accumulate_changes lists at a time, looking for changes this many at a time.
    CHANGES_WINDOW = 1024
    CHANGES_GROUP = 32
    # Doubles in a 64-byte cache line.
    CACHE_LINE_DOUBLES = 8
    # lloyd_pass: up to MAX_UNROLLED_FEATURES features, _lloyd_chunk_d compiled for each d
    # (the direct form sum((x - c)**2)); above, centre panels and C micro-kernels
    # (_lloyd_chunk_panels, the dot-product form).
    MAX_UNROLLED_FEATURES = 4
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
    """How lloyd_pass finds nearest centres: ``(max_unrolled, panel_width)``.

    Up to ``max_unrolled`` features, code compiled for each d and the direct form; above,
    centres in panels of ``panel_width`` (which depends on the instruction-set level) and the
    dot-product form. Exposed for tests and benchmarks.
    """
    return MAX_UNROLLED_FEATURES, FASTKM_PANEL


def block_rows():
    """The rows of a block: the bounded passes search a block whose rows all have infinite
    upper bounds whole. Blocks start at their chunk's first row (see row_chunks)."""
    return BLOCK_ROWS


def ball_neighbours():
    """How many nearest other centres exponion_pass lists per centre (its tables' width)."""
    return BALL_NEIGHBOURS


def row_major_min_features():
    """From how many features k-means++'s passes take rows where they lie, and can prune."""
    return ROW_MAJOR_MIN_FEATURES


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
    if n_chunks[0] > 1:
        n_chunks[0] = (n_chunks[0] + CHUNK_MULTIPLE - 1) // CHUNK_MULTIPLE * CHUNK_MULTIPLE
    chunk_rows[0] = (n_rows + n_chunks[0] - 1) // n_chunks[0]
    # Rounding the chunk size up can leave trailing chunks empty; drop them.
    n_chunks[0] = (n_rows + chunk_rows[0] - 1) // chunk_rows[0]


# ---------------------------------------------------------------------------------------------
# Block helpers (one thread, BLOCK_ROWS rows). They take d as an argument and are inlined:
# the chunk functions below call them with a literal d for the small dimensions that matter
# most (colours), which lets the compiler unroll the feature loops and keep a block's
# distances in registers.


cdef inline void _transpose_block_shifted(
        const floating* X,          # IN  (n, d) C-contiguous data
        Py_ssize_t d,
        Py_ssize_t start,           # IN  first row of the block
        Py_ssize_t stop,            # IN  end of the rows this chunk may read
        const floating* shift,      # IN  (d,) subtracted from every row
        floating* block_t,          # OUT (d, BLOCK_ROWS) the shifted rows in lanes
) noexcept nogil:
    """Rows [start, start + BLOCK_ROWS) of X, minus shift, into lanes (in the vector tiles of
    fastkm_transpose_shifted; lanes past the end repeat the last real row)."""
    cdef Py_ssize_t n_real = min(<Py_ssize_t>BLOCK_ROWS, stop - start)
    if floating is float:
        fastkm_transpose_shifted_f(X + start * d, d, NULL, n_real, shift, block_t)
    else:
        fastkm_transpose_shifted_d(X + start * d, d, NULL, n_real, shift, block_t)


# Shifts of zeros for _transpose_block (static: zero-initialized).
cdef float _ZEROS_F[ROW_MAJOR_MIN_FEATURES]
cdef double _ZEROS_D[ROW_MAJOR_MIN_FEATURES]


cdef inline Py_ssize_t _transpose_block(
        const floating* X,          # IN  (n, d) C-contiguous data, d < ROW_MAJOR_MIN_FEATURES
        Py_ssize_t d,
        Py_ssize_t start,           # IN  first row of the block
        Py_ssize_t stop,            # IN  end of the rows this chunk may read
        floating* block_t,          # OUT (d, BLOCK_ROWS) the block's rows in lanes
) noexcept nogil:
    """Copy rows [start, start + BLOCK_ROWS) of X into lanes; return how many are real.

    Lanes past the end repeat the last real row, so they hold finite, ignorable values.
    In fastkm_transpose_shifted's vector tiles, shifted by zeros (x - 0 is x, bit for bit):
    copied element by element, the transposition took most of k-means++'s distance pass
    at 8 features. (Its callers take rows where they lie from ROW_MAJOR_MIN_FEATURES
    features on, so the zeros need no more entries.)
    """
    if floating is float:
        _transpose_block_shifted(X, d, start, stop, _ZEROS_F, block_t)
    else:
        _transpose_block_shifted(X, d, start, stop, _ZEROS_D, block_t)
    return min(<Py_ssize_t>BLOCK_ROWS, stop - start)


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


# ---------------------------------------------------------------------------------------------
# Lloyd: assignment and accumulation in one pass


cdef inline Py_ssize_t _accumulator_ways(Py_ssize_t d) noexcept nogil:
    """Copies of the per-cluster sums that consecutive rows rotate through.

    Neighbouring rows (pixels above all) often share a cluster, and adding them to the same
    sums makes a chain of dependent memory updates; rotating through copies breaks it. High
    dimensions have enough independent additions per row already.
    """
    return ACCUMULATOR_WAYS if d <= 16 else 1


cdef extern from *:
    """
    /* lloyd_pass for d <= 4 (colours): fastkm_lloyd_small_{f,d}(X, sample_weight, centers,
    k, d, start, stop, ways, labels, acc, inertia, changed) is _lloyd_chunk_d below, in C.

    Rows go in blocks of FASTKM_BLOCK_ROWS. In a block, row i's nearest centre is the first j
    with the lowest

        dist = sum over f, in feature order, of (x_f - c_jf)^2    (FMAs where the ISA has them)

    the chunk's inertia is the sum over lanes i (in lane order) of the running per-lane sums
    of w * dist (an FMA where the ISA has one; w = 0 past the chunk's end), and each row
    adds w * x_f and w, in row order, to copy i % ways of its cluster's sums: FMAs where the
    ISA has them, as _accumulate_rows does for the bounded passes. (The Cython loop this
    replaced was compiled without them at d = 1, where its sums then differed from the
    bounded passes' in the last bit, in float64 with weights.) Lanes past the chunk's end
    repeat its last row.

    The block's rows are loaded as they lie (d values a row) and transposed into vector lanes
    in registers (two rounds of even/odd shuffles at d = 2 and 4, two shuffles per feature at
    d = 3); a slice of S vectors of rows is then compared with every centre, its distances,
    lowest distances and labels staying in registers: written with arrays, as the Cython
    code was, gcc kept them on the stack and reloaded them for every centre. The sums of a
    row are one vector load, multiply-add and store (see FASTKM_SMALL_ACCUMULATE). */
    #if defined(__FMA__)
    #define FASTKM_SMALL_MADD(a, b, acc) __builtin_fma((a), (b), (acc))
    #else
    #define FASTKM_SMALL_MADD(a, b, acc) ((acc) + (a) * (b))
    #endif
    #if FASTKM_VECTOR_EXTENSIONS
    /* Vector widths (bytes) of these kernels for float and double, and row vectors compared
    with each centre at once (S): their distances, lowest distances and labels (3 S vector
    registers) and their features (D S) stay in registers. At the x86-64-v4 level, on Zen 4
    (which splits 512-bit operations in two), 256-bit vectors of float and 512-bit vectors
    of double, 4 of them (a whole block) were the fastest: d = 3, k = 16 to 256, 1.2x to
    1.3x faster than 512-bit vectors of float, 2 of them, and 1.3x than 256-bit vectors of
    double. */
    #if FASTKM_VBYTES == 64
    #define FASTKM_SMALL_VBYTES_F 32
    #define FASTKM_SMALL_VBYTES_D 64
    #define FASTKM_SMALL_SLICE 4
    #else
    #define FASTKM_SMALL_VBYTES_F FASTKM_VBYTES
    #define FASTKM_SMALL_VBYTES_D FASTKM_VBYTES
    #define FASTKM_SMALL_SLICE 2
    #endif
    /* Lane-wise a < b ? a : b, in one instruction on x86 (minps), whose result does not wait
    for the comparison: the lowest distance so far is then a chain of one instruction per
    centre (with a comparison and a masked move, the loop took a third longer). */
    #if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
    #include <immintrin.h>
    #endif
    #if FASTKM_SMALL_VBYTES_F == 32 && defined(__AVX__)
    #define FASTKM_SMALL_VMIN_F(a, b) ((vec)_mm256_min_ps((__m256)(a), (__m256)(b)))
    #elif FASTKM_SMALL_VBYTES_F == 16 && defined(__SSE2__)
    #define FASTKM_SMALL_VMIN_F(a, b) ((vec)_mm_min_ps((__m128)(a), (__m128)(b)))
    #else /* other architectures: a select */
    #define FASTKM_SMALL_VMIN_F(a, b) \\
        ((vec)(((ivec)(a) & ((a) < (b))) | ((ivec)(b) & ~((a) < (b)))))
    #endif
    #if FASTKM_SMALL_VBYTES_D == 64 && defined(__AVX512F__)
    #define FASTKM_SMALL_VMIN_D(a, b) ((vec)_mm512_min_pd((__m512d)(a), (__m512d)(b)))
    #elif FASTKM_SMALL_VBYTES_D == 32 && defined(__AVX__)
    #define FASTKM_SMALL_VMIN_D(a, b) ((vec)_mm256_min_pd((__m256d)(a), (__m256d)(b)))
    #elif FASTKM_SMALL_VBYTES_D == 16 && defined(__SSE2__)
    #define FASTKM_SMALL_VMIN_D(a, b) ((vec)_mm_min_pd((__m128d)(a), (__m128d)(b)))
    #else
    #define FASTKM_SMALL_VMIN_D(a, b) FASTKM_SMALL_VMIN_F(a, b)
    #endif
    /* Lanes of a vector, as literals (they name the shuffle index lists). */
    #if FASTKM_SMALL_VBYTES_F == 32
    #define FASTKM_LANES_F 8
    #else
    #define FASTKM_LANES_F 4
    #endif
    #if FASTKM_SMALL_VBYTES_D == 64
    #define FASTKM_LANES_D 8
    #elif FASTKM_SMALL_VBYTES_D == 32
    #define FASTKM_LANES_D 4
    #else
    #define FASTKM_LANES_D 2
    #endif
    /* M(W, f, l) for l = 0 .. W - 1: the indices of a shuffle. */
    #define FASTKM_SEQ_2(M, W, f) M(W, f, 0), M(W, f, 1)
    #define FASTKM_SEQ_4(M, W, f) FASTKM_SEQ_2(M, W, f), M(W, f, 2), M(W, f, 3)
    #define FASTKM_SEQ_8(M, W, f) FASTKM_SEQ_4(M, W, f), M(W, f, 4), M(W, f, 5), M(W, f, 6), \\
                                  M(W, f, 7)
    #define FASTKM_SEQ_16(M, W, f) FASTKM_SEQ_8(M, W, f), M(W, f, 8), M(W, f, 9), M(W, f, 10), \\
                                   M(W, f, 11), M(W, f, 12), M(W, f, 13), M(W, f, 14), M(W, f, 15)
    #define FASTKM_EVEN(W, f, l) (2 * (l))
    #define FASTKM_ODD(W, f, l) (2 * (l) + 1)
    /* Feature f of W rows of 3 features held in vectors a, b, c: element 3 l + f of a|b|c,
    gathered from a|b first (A), then the rest from c (B: t|c, t the result of A). */
    #define FASTKM_THIRD_A(W, f, l) (3 * (l) + (f) < 2 * (W) ? 3 * (l) + (f) : 0)
    #define FASTKM_THIRD_B(W, f, l) (3 * (l) + (f) < 2 * (W) ? (l) : 3 * (l) + (f) - (W))
    #define FASTKM_SHUFFLE(a, b, M, LANES, f) \\
        __builtin_shufflevector(a, b, FASTKM_XCAT(FASTKM_SEQ_, LANES)(M, LANES, f))
    /* x[f] = feature f of the LANES rows at p (D values a row, one after the other). */
    #if FASTKM_SHUFFLE_TRANSPOSE
    #define FASTKM_SMALL_TRANSPOSE(LANES, D, p, x) {                                          \\
        vec r_[4];                                                                            \\
        _Pragma("GCC unroll 4")                                                               \\
        for (int q = 0; q < D; q++) __builtin_memcpy(&r_[q], (p) + q * LANES, sizeof(vec));    \\
        if (D == 1) {                                                                         \\
            x[0] = r_[0];                                                                     \\
        } else if (D == 2) {                                                                  \\
            x[0] = FASTKM_SHUFFLE(r_[0], r_[1], FASTKM_EVEN, LANES, 0);                       \\
            x[1] = FASTKM_SHUFFLE(r_[0], r_[1], FASTKM_ODD, LANES, 0);                        \\
        } else if (D == 3) {                                                                  \\
            x[0] = FASTKM_SHUFFLE(FASTKM_SHUFFLE(r_[0], r_[1], FASTKM_THIRD_A, LANES, 0),     \\
                                  r_[2], FASTKM_THIRD_B, LANES, 0);                           \\
            x[1] = FASTKM_SHUFFLE(FASTKM_SHUFFLE(r_[0], r_[1], FASTKM_THIRD_A, LANES, 1),     \\
                                  r_[2], FASTKM_THIRD_B, LANES, 1);                           \\
            x[2] = FASTKM_SHUFFLE(FASTKM_SHUFFLE(r_[0], r_[1], FASTKM_THIRD_A, LANES, 2),     \\
                                  r_[2], FASTKM_THIRD_B, LANES, 2);                           \\
        } else { /* D == 4: even/odd features, then even/odd of those */                     \\
            vec e0 = FASTKM_SHUFFLE(r_[0], r_[1], FASTKM_EVEN, LANES, 0);                     \\
            vec e1 = FASTKM_SHUFFLE(r_[2], r_[3], FASTKM_EVEN, LANES, 0);                     \\
            vec o0 = FASTKM_SHUFFLE(r_[0], r_[1], FASTKM_ODD, LANES, 0);                      \\
            vec o1 = FASTKM_SHUFFLE(r_[2], r_[3], FASTKM_ODD, LANES, 0);                      \\
            x[0] = FASTKM_SHUFFLE(e0, e1, FASTKM_EVEN, LANES, 0);                             \\
            x[1] = FASTKM_SHUFFLE(o0, o1, FASTKM_EVEN, LANES, 0);                             \\
            x[2] = FASTKM_SHUFFLE(e0, e1, FASTKM_ODD, LANES, 0);                              \\
            x[3] = FASTKM_SHUFFLE(o0, o1, FASTKM_ODD, LANES, 0);                              \\
        }                                                                                     \\
    }
    #else
    #define FASTKM_SMALL_TRANSPOSE(LANES, D, p, x) { /* through memory: x stays in registers */ \\
        __typeof__(x[0][0] + 0) t_[4][LANES];                                                 \\
        for (int f = 0; f < D; f++)                                                           \\
            for (int l = 0; l < LANES; l++) t_[f][l] = (p)[l * D + f];                        \\
        for (int f = 0; f < D; f++) __builtin_memcpy(&x[f], t_[f], sizeof(x[f]));             \\
    }
    #endif
    /* Nearest centre (label) and its distance (best) of each row of a block (rows: D values
    a row), ties to the lowest index. */
    #define FASTKM_DEFINE_SMALL_NEAREST(NAME, T, IT, D, LANES, VMIN)                          \\
    static inline void NAME(const T* rows, const T* centers, Py_ssize_t k, T* best,           \\
                            int* label) {                                                     \\
        typedef T vec __attribute__((vector_size(LANES * sizeof(T))));                         \\
        typedef IT ivec __attribute__((vector_size(LANES * sizeof(T))));                       \\
        enum { W = LANES,                                                                     \\
               S = FASTKM_SMALL_SLICE * W < FASTKM_BLOCK_ROWS ? FASTKM_SMALL_SLICE            \\
                                                               : FASTKM_BLOCK_ROWS / W };     \\
        typedef int ivec32 __attribute__((vector_size(W * sizeof(int))));                     \\
        for (int r0 = 0; r0 < FASTKM_BLOCK_ROWS; r0 += S * W) {                               \\
            vec x[S][4], b[S];                                                                \\
            ivec l[S], j = (ivec){0};                                                         \\
            _Pragma("GCC unroll 8")                                                           \\
            for (int s = 0; s < S; s++) {                                                     \\
                FASTKM_SMALL_TRANSPOSE(LANES, D, rows + (r0 + s * W) * D, x[s])               \\
                b[s] = (vec){0} + (T)INFINITY;                                                \\
                l[s] = (ivec){0};                                                             \\
            }                                                                                 \\
            const T* c = centers;                                                             \\
            for (Py_ssize_t jj = 0; jj < k; jj++, c += D, j += 1) { /* in index order */     \\
                _Pragma("GCC unroll 8")                                                       \\
                for (int s = 0; s < S; s++) {                                                 \\
                    /* From zero: a = t * t would let gcc fuse that product with the next   \\
                       one's sum instead (and round differently from the Cython loop). */    \\
                    vec a = (vec){0};                                                         \\
                    _Pragma("GCC unroll 4")                                                   \\
                    for (int f = 0; f < D; f++) {                                             \\
                        vec t = x[s][f] - c[f];                                               \\
                        a += t * t;                                                           \\
                    }                                                                         \\
                    ivec m = a < b[s]; /* all ones where the distance is lower */            \\
                    b[s] = VMIN(a, b[s]);                                                     \\
                    l[s] = (j & m) | (l[s] & ~m);                                             \\
                }                                                                             \\
            }                                                                                 \\
            _Pragma("GCC unroll 8")                                                           \\
            for (int s = 0; s < S; s++) {                                                     \\
                ivec32 l32 = __builtin_convertvector(l[s], ivec32);                           \\
                __builtin_memcpy(best + r0 + s * W, &b[s], sizeof(vec));                      \\
                __builtin_memcpy(label + r0 + s * W, &l32, sizeof(ivec32));                   \\
            }                                                                                 \\
        }                                                                                     \\
    }
    #else
    #define FASTKM_LANES_F 0
    #define FASTKM_LANES_D 0
    #define FASTKM_SMALL_VMIN_F 0
    #define FASTKM_SMALL_VMIN_D 0
    /* Portable fallback: the same distances and comparisons, left to the compiler. */
    #define FASTKM_DEFINE_SMALL_NEAREST(NAME, T, IT, D, LANES, VMIN)                          \\
    static inline void NAME(const T* rows, const T* centers, Py_ssize_t k, T* best,           \\
                            int* label) {                                                     \\
        for (int r = 0; r < FASTKM_BLOCK_ROWS; r++) { best[r] = INFINITY; label[r] = 0; }    \\
        for (Py_ssize_t j = 0; j < k; j++)                                                    \\
            for (int r = 0; r < FASTKM_BLOCK_ROWS; r++) {                                     \\
                T a = 0;                                                                      \\
                for (int f = 0; f < D; f++) {                                                 \\
                    T t = rows[r * D + f] - centers[j * D + f];                               \\
                    a += t * t;                                                               \\
                }                                                                             \\
                label[r] = a < best[r] ? (int)j : label[r];                                   \\
                best[r] = a < best[r] ? a : best[r];                                          \\
            }                                                                                 \\
    }
    #endif
    /* cluster[f] += w x[f] for f < D (FMAs where the ISA has them), then cluster[D] += w.
    With vector types, the sums of a row are one load, one multiply-add and one store: in
    separate scalars (as Cython's loop was compiled), they were stored together and
    reloaded apart, which the CPU does not forward from store to load as fast. Lane f of a
    vector gets the same operations as the scalar sum f: the weight's lane adds w * 1 = w,
    exactly. */
    #if FASTKM_VECTOR_EXTENSIONS
    typedef double fastkm_d2 __attribute__((vector_size(16)));
    typedef double fastkm_d4 __attribute__((vector_size(32)));
    #define FASTKM_SMALL_ACCUMULATE(D, x, w, cluster) {                                       \\
        double w_ = (w), *c_ = (cluster);                                                     \\
        if (D <= 2) {                                                                         \\
            fastkm_d2 s, v = {(x)[0], D == 1 ? 1.0 : (x)[D - 1]};                             \\
            __builtin_memcpy(&s, c_, sizeof(s));                                              \\
            s += w_ * v;                                                                      \\
            __builtin_memcpy(c_, &s, sizeof(s));                                              \\
            if (D == 2) c_[2] += w_;                                                          \\
        } else {                                                                              \\
            fastkm_d4 s, v = {(x)[0], (x)[1], (x)[2], D == 3 ? 1.0 : (x)[D - 1]};             \\
            __builtin_memcpy(&s, c_, sizeof(s));                                              \\
            s += w_ * v;                                                                      \\
            __builtin_memcpy(c_, &s, sizeof(s));                                              \\
            if (D == 4) c_[4] += w_;                                                          \\
        }                                                                                     \\
    }
    #else
    #define FASTKM_SMALL_ACCUMULATE(D, x, w, cluster) {                                       \\
        double w_ = (w), *c_ = (cluster);                                                     \\
        for (int f = 0; f < D; f++) c_[f] = FASTKM_SMALL_MADD(w_, (double)(x)[f], c_[f]);     \\
        c_[D] += w_;                                                                          \\
    }
    #endif
    #define FASTKM_DEFINE_SMALL_LLOYD(NAME, NEAREST, T, D)                                    \\
    static void NAME(const T* X, const T* sample_weight, const T* centers, Py_ssize_t k,      \\
                     Py_ssize_t start, Py_ssize_t stop, Py_ssize_t ways, int* labels,         \\
                     double* acc, double* inertia, Py_ssize_t* changed) {                     \\
        T buf[FASTKM_BLOCK_ROWS * D], best[FASTKM_BLOCK_ROWS];                                \\
        int label[FASTKM_BLOCK_ROWS];                                                         \\
        double lane_weight[FASTKM_BLOCK_ROWS], lane_inertia[FASTKM_BLOCK_ROWS], total = 0;    \\
        Py_ssize_t n_changed = 0;                                                             \\
        for (int i = 0; i < FASTKM_BLOCK_ROWS; i++) lane_inertia[i] = 0;                      \\
        for (Py_ssize_t b = start; b < stop; b += FASTKM_BLOCK_ROWS) {                        \\
            int n_real = stop - b < FASTKM_BLOCK_ROWS ? (int)(stop - b) : FASTKM_BLOCK_ROWS;  \\
            const T* rows = X + b * D;                                                        \\
            if (n_real < FASTKM_BLOCK_ROWS) { /* lanes past the end repeat the last row */    \\
                for (int i = 0; i < FASTKM_BLOCK_ROWS; i++)                                   \\
                    for (int f = 0; f < D; f++)                                               \\
                        buf[i * D + f] = rows[(i < n_real ? i : n_real - 1) * D + f];         \\
                rows = buf;                                                                   \\
            }                                                                                 \\
            NEAREST(rows, centers, k, best, label);                                           \\
            for (int i = 0; i < FASTKM_BLOCK_ROWS; i++)                                       \\
                lane_weight[i] = i >= n_real ? 0 : sample_weight ? sample_weight[b + i] : 1;  \\
            for (int i = 0; i < FASTKM_BLOCK_ROWS; i++)                                       \\
                lane_inertia[i] = FASTKM_SMALL_MADD(lane_weight[i], (double)best[i],          \\
                                                    lane_inertia[i]);                         \\
            for (int i = 0; i < n_real; i++) {                                                \\
                n_changed += labels[b + i] != label[i];                                       \\
                labels[b + i] = label[i];                                                     \\
            }                                                                                 \\
            for (int i = 0; i < n_real; i++)                                                  \\
                FASTKM_SMALL_ACCUMULATE(D, rows + i * D, lane_weight[i],                      \\
                                        acc + ((i & (ways - 1)) * k + label[i]) * (D + 1))    \\
        }                                                                                     \\
        for (int i = 0; i < FASTKM_BLOCK_ROWS; i++) total += lane_inertia[i];                 \\
        *inertia = total;                                                                     \\
        *changed = n_changed;                                                                 \\
    }
    #define FASTKM_DEFINE_SMALL_D(T, IT, SUFFIX, LANES, VMIN, D)                              \\
    FASTKM_DEFINE_SMALL_NEAREST(fastkm_small_nearest_##SUFFIX##D, T, IT, D, LANES, VMIN)      \\
    FASTKM_DEFINE_SMALL_LLOYD(fastkm_lloyd_small_##SUFFIX##D, fastkm_small_nearest_##SUFFIX##D, \\
                              T, D)
    #define FASTKM_DEFINE_SMALL(T, IT, SUFFIX, LANES, VMIN)                                   \\
    FASTKM_DEFINE_SMALL_D(T, IT, SUFFIX, LANES, VMIN, 1)                                      \\
    FASTKM_DEFINE_SMALL_D(T, IT, SUFFIX, LANES, VMIN, 2)                                      \\
    FASTKM_DEFINE_SMALL_D(T, IT, SUFFIX, LANES, VMIN, 3)                                      \\
    FASTKM_DEFINE_SMALL_D(T, IT, SUFFIX, LANES, VMIN, 4)                                      \\
    static void fastkm_lloyd_small_##SUFFIX(const T* X, const T* sample_weight,               \\
                                            const T* centers, Py_ssize_t k, Py_ssize_t d,     \\
                                            Py_ssize_t start, Py_ssize_t stop,                \\
                                            Py_ssize_t ways, int* labels, double* acc,        \\
                                            double* inertia, Py_ssize_t* changed) {           \\
        if (d == 1) FASTKM_SMALL_CALL(SUFFIX##1)                                              \\
        else if (d == 2) FASTKM_SMALL_CALL(SUFFIX##2)                                         \\
        else if (d == 3) FASTKM_SMALL_CALL(SUFFIX##3)                                         \\
        else FASTKM_SMALL_CALL(SUFFIX##4)                                                     \\
    }                                                                                         \\
    static void fastkm_small_block_nearest_##SUFFIX(const T* rows, const T* centers,         \\
                                                    Py_ssize_t k, Py_ssize_t d, T* best,      \\
                                                    int* label) {                             \\
        if (d == 1) fastkm_small_nearest_##SUFFIX##1(rows, centers, k, best, label);           \\
        else if (d == 2) fastkm_small_nearest_##SUFFIX##2(rows, centers, k, best, label);      \\
        else if (d == 3) fastkm_small_nearest_##SUFFIX##3(rows, centers, k, best, label);      \\
        else fastkm_small_nearest_##SUFFIX##4(rows, centers, k, best, label);                  \\
    }
    #define FASTKM_SMALL_CALL(SUFFIX_D)                                                       \\
        fastkm_lloyd_small_##SUFFIX_D(X, sample_weight, centers, k, start, stop, ways, labels, \\
                                      acc, inertia, changed);
    FASTKM_DEFINE_SMALL(float, int, f, FASTKM_LANES_F, FASTKM_SMALL_VMIN_F)
    FASTKM_DEFINE_SMALL(double, long long, d, FASTKM_LANES_D, FASTKM_SMALL_VMIN_D)
    """
    void fastkm_lloyd_small_f(const float* X, const float* sample_weight, const float* centers,
                              Py_ssize_t k, Py_ssize_t d, Py_ssize_t start, Py_ssize_t stop,
                              Py_ssize_t ways, int* labels, double* acc, double* inertia,
                              Py_ssize_t* changed) noexcept nogil
    void fastkm_lloyd_small_d(const double* X, const double* sample_weight,
                              const double* centers, Py_ssize_t k, Py_ssize_t d,
                              Py_ssize_t start, Py_ssize_t stop, Py_ssize_t ways, int* labels,
                              double* acc, double* inertia, Py_ssize_t* changed) noexcept nogil
    # The nearest of k centres (and its distance) of each of the FASTKM_BLOCK_ROWS rows at
    # rows, in lloyd_pass's arithmetic, ties to the lowest index (filter_pass's blocks).
    void fastkm_small_block_nearest_f(const float* rows, const float* centers, Py_ssize_t k,
                                      Py_ssize_t d, float* best, int* label) noexcept nogil
    void fastkm_small_block_nearest_d(const double* rows, const double* centers,
                                      Py_ssize_t k, Py_ssize_t d, double* best,
                                      int* label) noexcept nogil


cdef inline void _lloyd_chunk_d(
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,) or NULL: all 1
        const floating* centers,             # IN  (k, d)
        Py_ssize_t k, Py_ssize_t d,          # IN  d <= MAX_UNROLLED_FEATURES
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        Py_ssize_t ways,                     # IN  copies of the sums, a power of two
        int* labels,                         # IN/OUT (n,) rows [start, stop) written
        double* acc,                         # OUT (ways, k, d + 1) zeroed: per cluster, the
                                             #     weighted sum of its rows, then its weight
        double* inertia,                     # OUT weighted squared distances of the chunk
        Py_ssize_t* changed,                 # OUT how many of the chunk's labels changed
) noexcept nogil:
    """One chunk of lloyd_pass for d <= 4: fastkm_lloyd_small_{f,d}, compiled for each d."""
    if floating is float:
        fastkm_lloyd_small_f(X, sample_weight, centers, k, d, start, stop, ways, labels, acc,
                             inertia, changed)
    else:
        fastkm_lloyd_small_d(X, sample_weight, centers, k, d, start, stop, ways, labels, acc,
                             inertia, changed)


# ---------------------------------------------------------------------------------------------
# Lloyd for d > 4: centre panels and register-blocked C micro-kernels
#
# The centres are packed in panels of FASTKM_PANEL (see _pack_panels), and a C micro-kernel
# compares a block with a whole panel keeping its 2 x FASTKM_PANEL accumulators in registers.
# It uses the dot-product form: |x - c|^2 = |x|^2 - 2 x.c + |c|^2, and |x|^2 is the same
# for every centre, so the nearest centre minimises |c|^2 / 2 - x.c: one FMA per row, centre
# and feature instead of the direct form's subtraction and FMA (lloyd_pass measured 13% to
# 22% faster for it from d = 5 to 12). Rounding: the score's error grows with |x| |c|
# rather than with |x - c|^2, so rows almost equidistant from two centres may be assigned
# differently from the direct form (as in scikit-learn, which uses this form at every d);
# identical centres still tie exactly. Two measures keep this small: rows and centres are
# shifted by the mean of the centres, which brings |x| and |c| down to the spread of the
# data; and the inertia and the sums never use the score: they are computed from X and the
# chosen centre, in float64.


cdef inline void _block_nearest_panels(
        const floating* block_t,    # IN  (d, BLOCK_ROWS) shifted rows in lanes
        const floating* panels,     # IN  (n_panels, d, FASTKM_PANEL) see _pack_panels
        const floating* base,       # IN  (n_panels * FASTKM_PANEL,) see _pack_panels
        Py_ssize_t n_panels, Py_ssize_t d,
        int* label,                 # OUT (BLOCK_ROWS,) index of the nearest centre
) noexcept nogil:
    """Nearest centre of each lane; exact ties go to the lowest index."""
    if floating is float:
        fastkm_block_nearest_f(block_t, panels, base, n_panels, d, label)
    else:
        fastkm_block_nearest_d(block_t, panels, base, n_panels, d, label)


cdef void _lloyd_chunk_panels(
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,)
        const floating* centers,             # IN  (k, d)
        const floating* panels,              # IN  see _pack_panels
        const floating* base,                # IN  see _pack_panels
        const floating* shift,               # IN  (d,) see _pack_panels
        Py_ssize_t k, Py_ssize_t d,
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        Py_ssize_t ways,                     # IN  copies of the sums, a power of two
        floating* block_t,                   # scratch (d, BLOCK_ROWS)
        int* labels,                         # IN/OUT (n,) rows [start, stop) written
        double* acc,                         # OUT (ways, k, d + 1) zeroed, as _lloyd_chunk_d
        double* inertia,                     # OUT weighted squared distances of the chunk, or
                                             #     NULL: not computed
        Py_ssize_t* changed,                 # OUT how many of the chunk's labels changed
) noexcept nogil:
    cdef Py_ssize_t n_panels = (k + FASTKM_PANEL - 1) // FASTKM_PANEL
    cdef Py_ssize_t block_start, i, f, n_real, n_changed = 0
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
        _block_nearest_panels(block_t, panels, base, n_panels, d, label)
        for i in range(n_real):
            # Sums and the exact distance to the chosen centre, from the unshifted row.
            n_changed += labels[block_start + i] != label[i]
            labels[block_start + i] = label[i]
            w = 1 if sample_weight == NULL else sample_weight[block_start + i]
            row = X + (block_start + i) * d
            cluster = acc + ((i & (ways - 1)) * k + label[i]) * (d + 1)
            for f in range(d):
                cluster[f] += w * row[f]
            cluster[d] += w
            if inertia != NULL:
                total += w * _sq_distance(row, centers + label[i] * d, d)
    if inertia != NULL:
        inertia[0] = total
    changed[0] = n_changed


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

    shift (d,) is subtracted from rows and centres: the mean of the centres in the dot form
    (lloyd_pass's panels), zero in the direct form (yinyang_pass for d <= 4, which then sees
    the unchanged values, as lloyd_pass's _lloyd_chunk_d does). panels (n_panels, d,
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
        const floating[::1] sample_weight,   # IN  (n,) non-negative weights, or None: all 1
                                             #     (no array to read: less memory traffic)
        const floating[:, ::1] centers,      # IN  (k, d) current centres
        int[::1] labels,                     # IN/OUT (n,) nearest centre of each row; the
                                             #     values it held are only compared
        double[:, ::1] sums,                 # OUT (k, d) weighted sum of the rows of each cluster
        double[::1] weight_sums,             # OUT (k,) summed weight of each cluster
        int n_threads=1,
        bint with_inertia=True,              # IN  False: no inertia (NaN) for d > 4
):
    """One Lloyd pass: nearest centres, per-cluster weighted sums and weights, and inertia.

    ``sums`` and ``weight_sums`` are overwritten (not added to). Returns ``(inertia,
    n_changed)``: the weighted sum of squared distances of the rows to their nearest centre,
    and how many rows got a label other than the one ``labels`` held (so the Lloyd loop
    needs no copy of the previous labels to detect convergence).

    For d > 4 the inertia takes each row's distance to its centre once more, in float64 (a
    fifth of the pass on MNIST, k = 10): ``with_inertia=False`` leaves it out and returns NaN
    for it. ``labelled_inertia`` gives it later, bit for bit, from the labels. (For d <= 4
    it is the kernel's own distances, summed: always computed.)
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef bint use_panels = d > MAX_UNROLLED_FEATURES
    cdef Py_ssize_t ways = _accumulator_ways(d)
    cdef Py_ssize_t n_chunks, chunk_rows, c
    cdef const floating* weights = NULL
    if sample_weight is not None:
        _check_shapes(X, sample_weight, centers)
        weights = &sample_weight[0] if n else NULL
    elif centers.shape[1] != d or k < 1:
        raise ValueError("centers must have as many columns as X, and one row at least")
    if labels.shape[0] != n or sums.shape[0] != k or sums.shape[1] != d \
            or weight_sums.shape[0] != k:
        raise ValueError("lloyd_pass: output arrays do not match X and centers")
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n * k * d)
    cdef double[:, ::1] chunk_acc = _chunk_buffers(n_chunks, ways * k * (d + 1))
    cdef double[:, ::1] chunk_inertia = _chunk_buffers(n_chunks, 1)
    cdef Py_ssize_t[::1] chunk_changed = np.zeros(n_chunks, dtype=np.intp)
    cdef floating[:, ::1] scratch = _scratch(X, n_threads)
    cdef floating[:, :, ::1] panels
    cdef floating[::1] base, shift
    cdef double inertia = 0

    if use_panels:
        panels, base, shift = _pack_panels(centers, True)
        for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
            _lloyd_chunk_panels(&X[0, 0], weights, &centers[0, 0],
                                &panels[0, 0, 0], &base[0], &shift[0], k, d,
                                c * chunk_rows, min(n, (c + 1) * chunk_rows), ways,
                                &scratch[threadid(), 0], &labels[0], &chunk_acc[c, 0],
                                &chunk_inertia[c, 0] if with_inertia else NULL,
                                &chunk_changed[c])
    else:
        for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
            _lloyd_chunk_d(&X[0, 0], weights, &centers[0, 0], k, d, c * chunk_rows,
                           min(n, (c + 1) * chunk_rows), ways, &labels[0], &chunk_acc[c, 0],
                           &chunk_inertia[c, 0], &chunk_changed[c])

    _merge_chunk_sums(chunk_acc, n_chunks, ways, sums, weight_sums)
    if use_panels and not with_inertia:
        return float("nan"), int(np.sum(chunk_changed))
    for c in range(n_chunks):
        inertia += chunk_inertia[c, 0]
    return inertia, int(np.sum(chunk_changed))


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
#
# Full searches (every row in the first pass, and the rows whose bounds fail and whose ball
# overflows the neighbour lists) compare rows with every centre in lloyd_pass's arithmetic:
# the direct form for d <= MAX_UNROLLED_FEATURES, and for d > 4 its centre panels and
# dot-product scores (at d = 8, the direct form took 2x to 3.5x a Lloyd pass for them). The
# nearest centre is then lloyd_pass's own choice, and the two lowest scores become distance
# bounds with the rounding allowances of Yinyang (see _Slack): bounds, not distances, so that
# they stay valid however the scores rounded. Those searches keep only the two lowest scores,
# which costs little more than lloyd_pass's argmin: for Exponion, the second lowest then
# bounds every other centre (lower_rest; second_labels = labels marks that no second centre
# is listed). To convergence on blobs, that was as fast at d = 8 and 3% to 5% faster from
# d = 16 to 64 than keeping the second centre and third distance (whose kernel took 1.5x the
# argmin's time at d = 8).

cdef extern from *:
    """
    /* fastkm_block_two_nearest_{f,d}(block_t, panels, bases, n_panels, d, best, second,
    label): a block's rows against every panel, in index order, with fastkm_block_nearest's
    comparison (the same scores, bit for bit, and the same choice of the lowest, ties to
    the lowest index), also keeping per row the second lowest score. */
    #if FASTKM_VECTOR_EXTENSIONS
    /* Lane-wise min(a, b) and max(a, b) as (a < b ? a : b) and (a > b ? a : b): one
    instruction on x86 (minps, maxps), three selects elsewhere. */
    #if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
    #include <immintrin.h>
    #endif
    #if FASTKM_VBYTES == 64 && defined(__AVX512F__)
    #define FASTKM_VMIN_F(a, b) ((vec)_mm512_min_ps((__m512)(a), (__m512)(b)))
    #define FASTKM_VMAX_F(a, b) ((vec)_mm512_max_ps((__m512)(a), (__m512)(b)))
    #define FASTKM_VMIN_D(a, b) ((vec)_mm512_min_pd((__m512d)(a), (__m512d)(b)))
    #define FASTKM_VMAX_D(a, b) ((vec)_mm512_max_pd((__m512d)(a), (__m512d)(b)))
    #elif FASTKM_VBYTES == 32 && defined(__AVX__)
    #define FASTKM_VMIN_F(a, b) ((vec)_mm256_min_ps((__m256)(a), (__m256)(b)))
    #define FASTKM_VMAX_F(a, b) ((vec)_mm256_max_ps((__m256)(a), (__m256)(b)))
    #define FASTKM_VMIN_D(a, b) ((vec)_mm256_min_pd((__m256d)(a), (__m256d)(b)))
    #define FASTKM_VMAX_D(a, b) ((vec)_mm256_max_pd((__m256d)(a), (__m256d)(b)))
    #elif FASTKM_VBYTES == 16 && defined(__SSE2__)
    #define FASTKM_VMIN_F(a, b) ((vec)_mm_min_ps((__m128)(a), (__m128)(b)))
    #define FASTKM_VMAX_F(a, b) ((vec)_mm_max_ps((__m128)(a), (__m128)(b)))
    #define FASTKM_VMIN_D(a, b) ((vec)_mm_min_pd((__m128d)(a), (__m128d)(b)))
    #define FASTKM_VMAX_D(a, b) ((vec)_mm_max_pd((__m128d)(a), (__m128d)(b)))
    #else
    #define FASTKM_VSELECT(m, a, b) ((vec)(((ivec)(a) & (m)) | ((ivec)(b) & ~(m))))
    #define FASTKM_VMIN_F(a, b) FASTKM_VSELECT((a) < (b), a, b)
    #define FASTKM_VMAX_F(a, b) FASTKM_VSELECT((a) > (b), a, b)
    #define FASTKM_VMIN_D FASTKM_VMIN_F
    #define FASTKM_VMAX_D FASTKM_VMAX_F
    #endif
    /* The two vectors of rows (acc0, acc1: their accumulators) against the panel of
    centres first, first + 1, ...: b, s and l, their lowest scores, second lowest and the
    centres of the lowest so far. Both in one loop, so that each centre's constant term is
    broadcast once. */
    #define FASTKM_KEEP_TWO(IT, VMIN, VMAX, b0, s0, l0, b1, s1, l1)                           \\
            _Pragma("GCC unroll 16")                                                          \\
            for (int g = 0; g < FASTKM_PANEL; g++) { /* in index order */                     \\
                vec score0 = base[g] - acc0[g], score1 = base[g] - acc1[g];                   \\
                ivec j = (ivec){0} + (IT)(first + g);                                         \\
                ivec below0 = score0 < b0, below1 = score1 < b1;                              \\
                s0 = VMIN(s0, VMAX(score0, b0));                                              \\
                s1 = VMIN(s1, VMAX(score1, b1));                                              \\
                b0 = VMIN(score0, b0);                                                        \\
                b1 = VMIN(score1, b1);                                                        \\
                l0 = (j & below0) | (l0 & ~below0);                                           \\
                l1 = (j & below1) | (l1 & ~below1);                                           \\
            }
    /* The panels one after the other for each pair of vectors of rows, whose lowest
    scores, second lowest and labels stay in registers throughout: a call a panel stored
    and loaded them each time (blobs 1M x 8, k = 100, one thread: a search of every row
    29.1 to 28.3 ms). */
    #define FASTKM_DEFINE_BLOCK_TWO_NEAREST(NAME, T, IT, VMIN, VMAX)                          \\
    __attribute__((noinline))                                                                 \\
    static void NAME(const T* block_t, const T* panels, const T* bases, Py_ssize_t n_panels,  \\
                     Py_ssize_t d, T* best, T* second, int* label) {                          \\
        FASTKM_PANEL_TYPES(T, IT)                                                             \\
        for (int r0 = 0; r0 < FASTKM_BLOCK_ROWS; r0 += 2 * W) {                               \\
            vec b0 = (vec){0} + (T)INFINITY, s0 = b0, b1 = b0, s1 = b0;                       \\
            ivec l0 = (ivec){0}, l1 = (ivec){0};                                              \\
            for (Py_ssize_t p = 0; p < n_panels; p++) { /* in index order */                  \\
                FASTKM_PANEL_POINTERS(T)                                                      \\
                FASTKM_PANEL_ACCUMULATE(T, 0)                                                 \\
                FASTKM_KEEP_TWO(IT, VMIN, VMAX, b0, s0, l0, b1, s1, l1)                       \\
            }                                                                                 \\
            ivec32 l32 = __builtin_convertvector(l0, ivec32);                                 \\
            __builtin_memcpy(best + r0, &b0, sizeof(vec));                                    \\
            __builtin_memcpy(second + r0, &s0, sizeof(vec));                                  \\
            __builtin_memcpy(label + r0, &l32, sizeof(ivec32));                               \\
            l32 = __builtin_convertvector(l1, ivec32);                                        \\
            __builtin_memcpy(best + r0 + W, &b1, sizeof(vec));                                \\
            __builtin_memcpy(second + r0 + W, &s1, sizeof(vec));                              \\
            __builtin_memcpy(label + r0 + W, &l32, sizeof(ivec32));                           \\
        }                                                                                     \\
    }
    #else
    #define FASTKM_DEFINE_BLOCK_TWO_NEAREST(NAME, T, IT, VMIN, VMAX)                          \\
    static void NAME(const T* block_t, const T* panels, const T* bases, Py_ssize_t n_panels,  \\
                     Py_ssize_t d, T* best, T* second, int* label) {                          \\
        for (int r = 0; r < FASTKM_BLOCK_ROWS; r++) second[r] = (T)INFINITY;                  \\
        FASTKM_PORTABLE_PANELS(T,                                                             \\
            T m = score > best[r] ? score : best[r];                                          \\
            second[r] = m < second[r] ? m : second[r];                                        \\
            label[r] = score < best[r] ? j : label[r];                                        \\
            best[r] = score < best[r] ? score : best[r];)                                     \\
    }
    #endif
    FASTKM_DEFINE_BLOCK_TWO_NEAREST(fastkm_block_two_nearest_f, float, int, FASTKM_VMIN_F,
                                    FASTKM_VMAX_F)
    FASTKM_DEFINE_BLOCK_TWO_NEAREST(fastkm_block_two_nearest_d, double, long long,
                                    FASTKM_VMIN_D, FASTKM_VMAX_D)
    """
    void fastkm_block_two_nearest_f(const float* block_t, const float* panels,
                                    const float* bases, Py_ssize_t n_panels, Py_ssize_t d,
                                    float* best, float* second, int* label) noexcept nogil
    void fastkm_block_two_nearest_d(const double* block_t, const double* panels,
                                    const double* bases, Py_ssize_t n_panels, Py_ssize_t d,
                                    double* best, double* second, int* label) noexcept nogil


cdef extern from *:
    # w x + acc, with one rounding where the ISA has an FMA, two elsewhere (FASTKM_MADD_D,
    # with lloyd_pass's micro-kernels).
    double fastkm_madd "FASTKM_MADD_D"(double w, double x, double acc) noexcept nogil
    float fastkm_madd_f "FASTKM_MADD_F"(float w, float x, float acc) noexcept nogil


cdef struct _DotPanels:
    # What a bounded pass's full searches read for d > MAX_UNROLLED_FEATURES: lloyd_pass's
    # panels, constant terms and shift (see _pack_panels; void: X's dtype), and the
    # rounding allowances of its scores.
    const void* panels
    const void* base
    const void* shift
    Py_ssize_t n_panels
    const _Slack* slack


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


cdef inline void _block_two_nearest_panels(
        const floating* block_t,    # IN  (d, BLOCK_ROWS) shifted rows in lanes
        const _DotPanels* P,        # IN  lloyd_pass's panels
        Py_ssize_t d,
        floating* best,             # OUT (BLOCK_ROWS,) lowest score
        floating* second,           # OUT (BLOCK_ROWS,) second lowest (inf if k = 1)
        int* label,                 # OUT (BLOCK_ROWS,) centre of the lowest: lloyd_pass's
) noexcept nogil:
    if floating is float:
        fastkm_block_two_nearest_f(block_t, <const float*>P.panels, <const float*>P.base,
                                   P.n_panels, d, best, second, label)
    else:
        fastkm_block_two_nearest_d(block_t, <const double*>P.panels, <const double*>P.base,
                                   P.n_panels, d, best, second, label)


cdef inline Py_ssize_t _settle_pending(
        const floating* X, Py_ssize_t d, const floating* centers, Py_ssize_t k,
        const _DotPanels* P,        # IN  lloyd_pass's panels (d > 4), or NULL: direct form
        const Py_ssize_t* rows,     # IN  (n_pending,) rows whose bounds failed, ascending
        Py_ssize_t n_pending,
        floating* block_t,          # scratch (d, BLOCK_ROWS)
        int* labels,                # OUT rows' nearest centre
        floating* upper,            # OUT upper bound of the rows' distance to it
        floating* lower,            # OUT lower bound of their distance to the second nearest
        int* second_labels,         # OUT rows' second nearest centre (NULL: not kept); with
                                    #     panels, their nearest: none listed
        floating* lower_rest,       # OUT lower bound of their distance to any centre but
                                    #     those two (NULL: not kept)
) noexcept nogil:
    """Full nearest-centre search for up to BLOCK_ROWS rows, in vector lanes, in lloyd_pass's
    arithmetic. Returns how many of them changed centre."""
    cdef Py_ssize_t i, f, row, changed = 0
    cdef floating best[BLOCK_ROWS]
    cdef floating second[BLOCK_ROWS]
    cdef floating third[BLOCK_ROWS]
    cdef int label[BLOCK_ROWS]
    cdef int second_label[BLOCK_ROWS]
    cdef double sq_norm[BLOCK_ROWS]
    cdef const floating* shift
    cdef floating kind = 0
    cdef double norm, e2, c
    cdef _Slack slack
    if P == NULL:
        for i in range(BLOCK_ROWS):
            row = rows[min(i, n_pending - 1)]
            for f in range(d):
                block_t[f * BLOCK_ROWS + i] = X[row * d + f]
        _block_three_nearest(block_t, centers, k, d, best, second, third, label,
                             second_label)
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
    shift = <const floating*>P.shift
    slack = P.slack[0]
    # (Consecutive or not, the rows go through the vector tiles: copied element by element,
    # the scattered rows of blobs 1M x 8's late passes took them 5.5 ms instead of 5.2 on
    # one thread.)
    if floating is float:
        fastkm_transpose_shifted_f(X, d, rows, n_pending, shift, block_t)
    else:
        fastkm_transpose_shifted_d(X, d, rows, n_pending, shift, block_t)
    _block_two_nearest_panels(block_t, P, d, best, second, label)
    for i in range(BLOCK_ROWS):
        sq_norm[i] = 0
    for f in range(d):
        for i in range(BLOCK_ROWS):
            sq_norm[i] += <double>block_t[f * BLOCK_ROWS + i] * block_t[f * BLOCK_ROWS + i]
    # The bounds of all lanes: _row_bounds, _dist_above and _dist_below of the dot form,
    # spelt out in a loop without branches or structures, which vectorizes.
    for i in range(BLOCK_ROWS):
        norm = sqrt(sq_norm[i]) * (1 + slack.rho)
        e2 = _dot_e2(&slack, norm)
        c = 4 * slack.eps * (norm + slack.radius)
        best[i] = _round_up(sqrt(max(0.0, 2 * best[i] + (sq_norm[i] + e2))) + c, kind)
        second[i] = _round_down(sqrt(max(0.0, 2 * second[i] + (sq_norm[i] - e2))) - c, kind)
    for i in range(n_pending):
        row = rows[i]
        changed += labels[row] != label[i]
        labels[row] = label[i]
        upper[row] = best[i]
        lower[row] = second[i]
        if second_labels != NULL:
            second_labels[row] = label[i]
            lower_rest[row] = second[i]
    return changed


cdef inline void _keep_candidate(
        floating value,             # IN  candidate j's distance or score
        int j,
        floating* best,             # IN/OUT the lowest value so far
        floating* second,           # IN/OUT the second lowest
        floating* third,            # IN/OUT the third lowest
        int* nearest,               # IN/OUT the candidate of the lowest: ties to the lower index
        int* runner_up,             # IN/OUT the candidate of the second lowest
) noexcept nogil:
    """One more candidate for a ball search's three lowest values. Without branches: which
    of two near centres is nearer is unpredictable."""
    cdef bint nearer = (value < best[0]) | ((value == best[0]) & (j < nearest[0]))
    third[0] = min(third[0], max(second[0], value))
    runner_up[0] = nearest[0] if nearer else (j if value < second[0] else runner_up[0])
    second[0] = min(second[0], max(best[0], value))
    nearest[0] = j if nearer else nearest[0]
    best[0] = min(best[0], value)


cdef inline bint _ball_too_wide(
        const floating* near_dist,  # IN  (n_near,) as in _ball_search
        Py_ssize_t n_near, Py_ssize_t k,
        Py_ssize_t max_search,      # IN  the most centres worth comparing one by one
        double radius,              # IN  the ball's radius
) noexcept nogil:
    """Whether a ball search of this radius cannot be done: it reaches past the listed
    centres, or holds more than max_search of them."""
    return (near_dist[n_near - 1] <= radius and n_near < k - 1) or (
        max_search < n_near and near_dist[max_search] <= radius)


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
        Py_ssize_t max_search,      # IN  the most centres worth comparing one by one
        int* label,                 # OUT the row's nearest centre
        floating* upper,            # OUT the row's distance to it
        int* second_label,          # OUT its second nearest centre
        floating* lower,            # OUT the row's distance to it
        floating* lower_rest,       # OUT a lower bound of its distance to any other centre
) noexcept nogil:
    """Exponion's search among the centres near the row's centre; False if the ball reaches
    past the listed ones, or holds more than max_search of them (the caller then compares
    the row with every centre)."""
    cdef floating best = u_sq, second = INFINITY, third = INFINITY, radius, u
    cdef int nearest = a, runner_up = a, j
    cdef Py_ssize_t m
    if n_near == 0:
        return False
    u = sqrt(u_sq)
    # Widened so that rounding in u and in the distances cannot leave a candidate out.
    radius = <floating>((2.0 * u + gap) * (1.0 + BALL_MARGIN))
    if _ball_too_wide(near_dist, n_near, k, max_search, radius):
        return False
    for m in range(n_near):
        if near_dist[m] > radius:
            break
        j = near_index[m]
        _keep_candidate(_row_sq_distance(x, centers + j * d, d), j, &best, &second, &third,
                        &nearest, &runner_up)
    label[0] = nearest
    upper[0] = sqrt(best)
    second_label[0] = runner_up
    lower[0] = sqrt(second)
    # A centre outside the ball is farther than radius from a, so farther than
    # radius - u from the row.
    lower_rest[0] = min(<floating>sqrt(third),
                        <floating>((radius - u) * (1.0 - BALL_MARGIN)))
    return True


cdef inline bint _ball_search_dot(
        const floating* x,          # IN  (d,) the row
        const _DotPanels* P,        # IN  lloyd_pass's panels
        Py_ssize_t d, Py_ssize_t k,
        int a,                      # IN  the row's current centre
        floating u,                 # IN  the row's distance to it
        floating gap,               # IN  as in _ball_search
        const floating* near_dist,  # IN  as in _ball_search
        const int* near_index,      # IN  as in _ball_search
        Py_ssize_t n_near,
        Py_ssize_t max_search,      # IN  the most centres worth comparing one by one
        int* label,                 # OUT the row's nearest centre: lloyd_pass's, ties included
        floating* upper,            # OUT an upper bound of the row's distance to it
        int* second_label,          # OUT the centre of the second lowest score (or label)
        floating* lower,            # OUT a lower bound of the row's distance to it
        floating* lower_rest,       # OUT a lower bound of its distance to any other centre
) noexcept nogil:
    """_ball_search for d > 4, in lloyd_pass's arithmetic: the row's centre and the
    candidates are compared by their dot-form scores, computed as the panel kernel computes
    them (the row shifted as _transpose_block_shifted shifts it, the products summed from
    zero in feature order with its multiply-adds, fused where the ISA has an FMA, then taken
    from the centre's constant term), so the row goes where lloyd_pass sends it even within
    rounding of two centres. (The distances of the direct form, summed in another order,
    sent such rows to the other centre in float32, and the fits then drifted apart.) The
    ball is widened by how far the scores' rounding lets a centre outside it win: one
    farther than u + sqrt((u + c)^2 + 2 e2) + c from the row scores above the row's centre
    (e2 and c: see _Slack and _settle_pending), so its radius is 2 u plus the larger of gap
    and that widening. The candidates' scores are summed side by side, one feature at a
    time: one after the other, each waited on its own chain of multiply-adds."""
    cdef const _Slack* slack = P.slack
    cdef const floating* shift = <const floating*>P.shift
    cdef const floating* panels = <const floating*>P.panels
    cdef const floating* base = <const floating*>P.base
    cdef floating kind = 0, best, second = INFINITY, third = INFINITY, xf
    cdef int nearest, runner_up
    cdef Py_ssize_t m, f, i, n_cand = 1
    cdef double sq_norm = 0, norm, e2, c, widen, radius
    cdef int cand[BALL_NEIGHBOURS + 1]
    cdef floating acc[BALL_NEIGHBOURS + 1]
    cdef const floating* column[BALL_NEIGHBOURS + 1]
    if n_near == 0:
        return False
    # Most balls that fail, fail at _ball_search's radius: the allowances come after.
    radius = (2.0 * u + gap) * (1.0 + BALL_MARGIN)
    if _ball_too_wide(near_dist, n_near, k, max_search, radius):
        return False
    # |x'| <= |c'_a| + |x' - c'_a|: |c'_a| is sqrt(2 base[a]) to a few eps, |x' - c'_a| is
    # u to (d + 2) eps and to the rounding of the shifts, 4 eps (|x'| + R) with R >= |c'_a|
    # (see _Slack): a relative margin for the first two, 8 eps R for the last.
    norm = (sqrt(2.0 * base[a]) + u) * (1 + 2.0 ** -10) + 8 * slack.eps * slack.radius
    e2 = _dot_e2(slack, norm)
    c = 4 * slack.eps * (norm + slack.radius)
    widen = 2 * c + e2 / (u + c)  # >= sqrt((u + c)^2 + 2 e2) + c - u
    if widen > gap:
        radius = (2.0 * u + widen) * (1.0 + BALL_MARGIN)
        if _ball_too_wide(near_dist, n_near, k, max_search, radius):
            return False
    cand[0] = a
    for m in range(n_near):
        if near_dist[m] > radius:
            break
        cand[n_cand] = near_index[m]
        n_cand += 1
    for i in range(n_cand):
        acc[i] = 0
        column[i] = (panels + (cand[i] // FASTKM_PANEL) * d * FASTKM_PANEL
                     + cand[i] % FASTKM_PANEL)
    for f in range(d):
        xf = x[f] - shift[f]
        sq_norm += <double>xf * xf
        for i in range(n_cand):
            if floating is float:
                acc[i] = fastkm_madd_f(xf, column[i][f * FASTKM_PANEL], acc[i])
            else:
                acc[i] = fastkm_madd(xf, column[i][f * FASTKM_PANEL], acc[i])
    nearest = runner_up = a
    best = base[a] - acc[0]
    for i in range(1, n_cand):
        _keep_candidate(base[cand[i]] - acc[i], cand[i], &best, &second, &third, &nearest,
                        &runner_up)
    # The bounds from the scores, as _settle_pending takes them (with |x'| itself).
    norm = sqrt(sq_norm) * (1 + slack.rho)
    e2 = _dot_e2(slack, norm)
    c = 4 * slack.eps * (norm + slack.radius)
    label[0] = nearest
    upper[0] = _round_up(sqrt(max(0.0, 2 * best + (sq_norm + e2))) + c, kind)
    second_label[0] = runner_up
    lower[0] = _round_down(sqrt(max(0.0, 2 * second + (sq_norm - e2))) - c, kind)
    # A centre outside the ball is farther than radius from a, so farther than
    # radius - u from the row.
    lower_rest[0] = min(_round_down(sqrt(max(0.0, 2 * third + (sq_norm - e2))) - c, kind),
                        <floating>((radius - u) * (1.0 - BALL_MARGIN)))
    return True


cdef inline void _accumulate_rows(
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,)
        const int* labels,                   # IN  (n,) the rows' centres
        Py_ssize_t k, Py_ssize_t d,
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        Py_ssize_t ways,                     # IN  copies of the sums, a power of two
        double* acc,                         # OUT (ways, k, d + 1) zeroed, as _lloyd_chunk_d
) noexcept nogil:
    """The bounded passes' sums: the same accumulation, in the same order, as
    _lloyd_chunk_d's, so that their centres are lloyd_pass's bit for bit. The multiply-add
    is fused explicitly where the ISA has an FMA, as the compiler contracts lloyd_pass's:
    left to the compiler here, whether it contracted depended on the code around the call
    (inlined in _bounded_chunk_d), and the sums differed in the last bit."""
    cdef Py_ssize_t row, i, f
    cdef double w
    cdef double* cluster
    for row in range(start, stop):
        i = (row - start) % BLOCK_ROWS
        w = sample_weight[row]
        cluster = acc + ((i & (ways - 1)) * k + labels[row]) * (d + 1)
        for f in range(d):
            cluster[f] = fastkm_madd(w, X[row * d + f], cluster[f])
        cluster[d] += w


cdef inline double* _touched_cluster(
        double* acc,                         # IN/OUT (k, d + 1) see _accumulate_changes
        unsigned char* touched,              # IN/OUT (k,)
        int j, Py_ssize_t d,
) noexcept nogil:
    """Cluster j's changes in acc, zeroed the first time the chunk touches them."""
    cdef Py_ssize_t f
    cdef double* cluster = acc + j * (d + 1)
    if not touched[j]:
        touched[j] = 1
        for f in range(d + 1):
            cluster[f] = 0
    return cluster


cdef inline void _accumulate_changes(
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,)
        const int* labels,                   # IN  (n,) the rows' centres
        const int* old_labels,               # IN  (stop - start,) their centres before the pass
        Py_ssize_t k, Py_ssize_t d,
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        double* acc,                         # OUT (k, d + 1) per cluster touched, what the
                                             #     chunk's changes add to its weighted sums,
                                             #     then to its weight (others left as they are)
        unsigned char* touched,              # IN/OUT (k,) zeroed: 1 for the clusters touched
) noexcept nogil:
    """_accumulate_rows for the rows that changed centre only: each adds itself to its new
    cluster's sums and takes itself from its old one's. Reading X only for those rows is
    what makes it cheaper once few rows move (blobs 1M x 8, k = 100, two threads: the
    later passes 5.5 to 4.3 ms), and only the clusters they touch are zeroed and merged
    (blobs 200k x 128, k = 256: all clusters' buffers were 17 MB a pass)."""
    cdef Py_ssize_t row, f, window, i, n_moved, group, group_stop, n_group
    cdef double w
    cdef double* gain
    cdef double* loss
    cdef Py_ssize_t moved[CHANGES_WINDOW]
    cdef Py_ssize_t line = 64 // sizeof(floating)  # values in a cache line
    # The rows that moved, listed without a branch a window at a time and their rows of X
    # fetched before any is summed: X has left the cache by now, and with a mispredicted
    # branch on each row in between, its loads from memory were taken one at a time
    # (blobs 1M x 8, k = 100, one thread: a pass changing 1.6% of the rows 16.0 to 15.5
    # ms).
    for window from start <= window < stop by CHANGES_WINDOW:
        n_moved = 0
        for group from window <= group < min(stop, window + CHANGES_WINDOW) by CHANGES_GROUP:
            # Most groups have no row that moved, found by a count that vectorizes; listing
            # every row was a chain of dependent additions (blobs 1M x 8, k = 100, one
            # thread: a tenth of a late pass).
            group_stop = min(stop, group + CHANGES_GROUP)
            n_group = 0
            for row in range(group, group_stop):
                n_group += labels[row] != old_labels[row - start]
            if n_group:
                for row in range(group, group_stop):
                    moved[n_moved] = row
                    n_moved += labels[row] != old_labels[row - start]
        for i in range(n_moved):
            for f from 0 <= f < d by line:
                fastkm_prefetch_near(X + moved[i] * d + f)
        for i in range(n_moved):
            row = moved[i]
            w = sample_weight[row]
            gain = _touched_cluster(acc, touched, labels[row], d)
            loss = _touched_cluster(acc, touched, old_labels[row - start], d)
            for f in range(d):
                gain[f] = fastkm_madd(w, X[row * d + f], gain[f])
                loss[f] = fastkm_madd(-w, X[row * d + f], loss[f])
            gain[d] += w
            loss[d] -= w


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
        const _DotPanels* P,                 # IN  lloyd_pass's panels (d > 4), or NULL
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
        int* old_labels,                     # scratch (stop - start,) for the rows' centres
                                             #     before the pass; NULL: acc gets all the
                                             #     rows' sums, not their changes
        double* acc,                         # OUT (ways, k, d + 1) as in _lloyd_chunk_d, or
                                             #     as in _accumulate_changes
        unsigned char* touched,              # IN/OUT (k,) with old_labels: see
                                             #     _accumulate_changes
) noexcept nogil:
    """Returns how many rows changed centre."""
    cdef Py_ssize_t row, i, f, n_pending = 0, n_block, changed = 0
    cdef Py_ssize_t line = 64 // sizeof(floating)  # values in a cache line
    cdef const floating* next_rows
    cdef Py_ssize_t pending[BLOCK_ROWS]
    cdef Py_ssize_t block[BLOCK_ROWS]
    cdef floating bound, u
    cdef int j
    cdef Py_ssize_t n_fresh
    cdef Py_ssize_t max_search = n_near if P == NULL else k // BALL_SEARCH_SHARE
    cdef Py_ssize_t block_start, m, n_failing
    cdef Py_ssize_t failing[BLOCK_ROWS]
    cdef floating failing_bound[BLOCK_ROWS]
    cdef floating failing_sq[BLOCK_ROWS]
    cdef Py_ssize_t still[BLOCK_ROWS]
    cdef Py_ssize_t n_still
    if old_labels != NULL:
        memcpy(old_labels, labels + start, (stop - start) * sizeof(int))
    for block_start from start <= block_start < stop by BLOCK_ROWS:
        # The rows whose bounds fail are read from memory one by one, too sparsely for the
        # hardware prefetcher: X's next block is fetched while this one is handled, into the
        # first-level cache (with the hint for the second level, passes that read X for
        # the sums' changes only took 13.5 ms instead of 8.3 on blobs 1M x 8, one thread:
        # the failing rows' loads missed).
        next_rows = X + (block_start + BLOCK_ROWS) * d
        for f from 0 <= f < min(BLOCK_ROWS, stop - block_start - BLOCK_ROWS) * d by line:
            fastkm_prefetch_near(next_rows + f)
        # A block of rows whose bounds were all reset (the first pass) is searched whole: no
        # distance to a stale centre, no ball to try.
        n_block = min(<Py_ssize_t>BLOCK_ROWS, stop - block_start)
        n_fresh = 0
        for i in range(n_block):  # (counted without a branch, so that it vectorizes)
            block[i] = block_start + i
            n_fresh += upper[block_start + i] == INFINITY
        if n_fresh == n_block:
            changed += _settle_pending(X, d, centers, k, P, block, n_block, block_t, labels,
                                       upper, lower, second_labels, lower_rest)
            continue
        # The bounds of the whole block first, listing the rows whose bounds fail without a
        # branch: which ones do is unpredictable, and mispredictions took much of a pass.
        n_failing = 0
        for row in range(block_start, block_start + n_block):
            j = labels[row]
            u = upper[row] + shift[j]
            if exponion:
                lower[row] = lower[row] - shift[second_labels[row]]
                lower_rest[row] = min(lower_rest[row] - decay[j], reach[j] - u)
                bound = max(min(lower[row], lower_rest[row]), half_gap[j])
            else:
                lower[row] = lower[row] - decay[j]
                bound = max(lower[row], half_gap[j])
            upper[row] = u
            failing[n_failing] = row
            failing_bound[n_failing] = bound
            # (Equal: another centre may be as near, and lower in index.)
            n_failing += u >= bound
        # Most of the block failing (the second pass, after the centres' first big moves):
        # one search of the whole block in panels costs less than each failing row's
        # distance to its centre and ball (blobs 1M x 8, k = 100: the second pass 26 to
        # 19 ms on two threads).
        if 4 * n_failing > 3 * n_block:
            changed += _settle_pending(X, d, centers, k, P, block, n_block, block_t, labels,
                                       upper, lower, second_labels, lower_rest)
            continue
        # The failing rows' distances to their centres first, then which still fail: with a
        # branch on each row's test in between, its mispredictions stalled every distance
        # (blobs 1M x 8, k = 100, one thread: the third pass 29 to 22 ms).
        for m in range(n_failing):
            row = failing[m]
            failing_sq[m] = _row_sq_distance(X + row * d, centers + labels[row] * d, d)
        n_still = 0
        for m in range(n_failing):
            u = sqrt(failing_sq[m])
            upper[failing[m]] = u  # (a row that still fails gets its bounds below)
            still[n_still] = m
            n_still += u >= failing_bound[m]
        for m in range(n_still):
            row = failing[still[m]]
            j = labels[row]
            if exponion and (_ball_search(
                    X + row * d, centers, d, k, j, failing_sq[still[m]], gap[j],
                    near_dist + j * BALL_NEIGHBOURS, near_index + j * BALL_NEIGHBOURS,
                    n_near, max_search, labels + row, upper + row, second_labels + row,
                    lower + row, lower_rest + row) if P == NULL else _ball_search_dot(
                    X + row * d, P, d, k, j, upper[row], gap[j],
                    near_dist + j * BALL_NEIGHBOURS, near_index + j * BALL_NEIGHBOURS,
                    n_near, max_search, labels + row, upper + row, second_labels + row,
                    lower + row, lower_rest + row)):
                changed += labels[row] != j
                continue
            pending[n_pending] = row
            n_pending += 1
            if n_pending == BLOCK_ROWS:
                changed += _settle_pending(X, d, centers, k, P, pending, n_pending, block_t,
                                           labels, upper, lower, second_labels, lower_rest)
                n_pending = 0
    if n_pending:
        changed += _settle_pending(X, d, centers, k, P, pending, n_pending, block_t, labels,
                                   upper, lower, second_labels, lower_rest)
    if old_labels == NULL:
        _accumulate_rows(X, sample_weight, labels, k, d, start, stop, ways, acc)
    else:
        _accumulate_changes(X, sample_weight, labels, old_labels, k, d, start, stop, acc,
                            touched)
    return changed


cdef Py_ssize_t _bounded_chunk(
        const floating* X, const floating* sample_weight, const floating* centers,
        const floating* near_dist, const int* near_index, Py_ssize_t n_near, bint exponion,
        const floating* half_gap, const floating* gap, const floating* shift,
        const floating* decay, const floating* reach, const _DotPanels* P, Py_ssize_t k,
        Py_ssize_t d, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t ways, floating* block_t,
        int* labels, floating* upper, floating* lower, int* second_labels,
        floating* lower_rest, int* old_labels, double* acc, unsigned char* touched,
) noexcept nogil:
    """_bounded_chunk_d, compiled separately for colours (d = 3)."""
    if d == 3:
        return _bounded_chunk_d(X, sample_weight, centers, near_dist, near_index, n_near,
                                exponion, half_gap, gap, shift, decay, reach, P, k, 3, start,
                                stop, ways, block_t, labels, upper, lower, second_labels,
                                lower_rest, old_labels, acc, touched)
    return _bounded_chunk_d(X, sample_weight, centers, near_dist, near_index, n_near,
                            exponion, half_gap, gap, shift, decay, reach, P, k, d, start, stop,
                            ways, block_t, labels, upper, lower, second_labels, lower_rest,
                            old_labels, acc, touched)


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
        double[:, ::1] sums, double[::1] weight_sums, int n_threads, bint update_sums,
        str name):
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
    cdef double[:, ::1] chunk_acc
    cdef unsigned char[:, ::1] touched
    cdef int[:, ::1] old_labels
    chunk_acc, touched, old_labels = _sums_buffers(n_chunks, chunk_rows, n_threads, ways, k,
                                                   d, update_sums)
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

    # Full searches in lloyd_pass's arithmetic: its panels for d > 4.
    cdef _DotPanels panels
    cdef _Slack slack
    cdef const _DotPanels* P = NULL
    cdef floating[:, :, ::1] panels_v
    cdef floating[::1] base_v, centre_shift_v
    if d > MAX_UNROLLED_FEATURES:
        panels_v, base_v, centre_shift_v = _pack_panels(centers, True)
        slack = _rounding_slack(True, d, float(np.max(np.asarray(base_v)[:k])),
                                floating is float)
        panels.panels, panels.base = &panels_v[0, 0, 0], &base_v[0]
        panels.shift, panels.n_panels = &centre_shift_v[0], panels_v.shape[0]
        panels.slack = &slack
        P = &panels

    cdef Py_ssize_t[::1] chunk_changed = np.zeros(n_chunks, dtype=np.intp)
    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
        chunk_changed[c] = _bounded_chunk(
                       &X[0, 0], &sample_weight[0], &centers[0, 0], &near_dist[0, 0],
                       &table_index[0, 0], n_near, exponion, &half_gap[0], &gap[0],
                       &shift[0], &decay[0], &reach[0], P, k, d, c * chunk_rows,
                       min(n, (c + 1) * chunk_rows), ways, &scratch[threadid(), 0],
                       &labels[0], &upper[0], &lower[0], second_labels, lower_rest,
                       &old_labels[threadid(), 0] if update_sums else NULL, &chunk_acc[c, 0],
                       &touched[c, 0] if update_sums else NULL)

    if update_sums:
        _merge_chunk_changes(chunk_acc, touched, n_chunks, sums, weight_sums)
    else:
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
        double[:, ::1] sums,                 # OUT (k, d) weighted sum of the rows of each
                                             #     cluster (IN/OUT with update_sums)
        double[::1] weight_sums,             # OUT (k,) summed weight of each cluster (IN/OUT
                                             #     with update_sums)
        int n_threads=1,
        bint update_sums=False,              # IN  sums and weight_sums are those of the labels
                                             #     passed in: add only what the pass changes
):
    """One Lloyd pass with Hamerly's bounds: the same labels, sums and weights.

    Returns how many rows changed label.

    To start (or restart) the bounds, pass ``upper = inf``, ``lower = 0``, any valid labels
    and ``shift = 0``. Rows whose bounds prove their centre is still the nearest are not
    compared with any centre; the others are compared with all of them (for d > 4 in
    lloyd_pass's panels).

    With ``update_sums``, the sums are updated rather than computed afresh: each row that
    changes label moves its weighted values from its old cluster's sums to its new one's,
    and a cluster left with zero weight gets zero sums. Only those rows are read for the
    sums, which is cheaper once few rows move (blobs 1M x 8, k = 100, two threads: the
    later passes 5.5 to 4.3 ms); the sums then agree with lloyd_pass's to rounding (the
    weights exactly, where they are whole numbers).
    """
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t k = centers.shape[0]
    # Built afresh each pass: Hamerly needs only each centre's nearest other one.
    cdef floating[:, ::1] table_centers = np.full((k, centers.shape[1]), np.nan, dtype=dtype)
    cdef int[:, ::1] table_index = np.empty((k, BALL_NEIGHBOURS), dtype=np.int32)
    cdef floating[:, ::1] table_dist = np.empty((k, BALL_NEIGHBOURS), dtype=dtype)
    return _bounded_pass(X, sample_weight, centers, shift, labels, upper, lower, NULL, NULL,
                         table_centers, table_index, table_dist, sums, weight_sums,
                         n_threads, update_sums, "hamerly_pass")


def exponion_pass(
        const floating[:, ::1] X,            # IN  (n, d) rows to assign
        const floating[::1] sample_weight,   # IN  (n,) non-negative weights
        const floating[:, ::1] centers,      # IN  (k, d) current centres
        const floating[::1] shift,           # IN  (k,) distance each centre moved since the
                                             #     bounds were last updated
        int[::1] labels,                     # IN/OUT (n,) nearest centre of each row
        floating[::1] upper,                 # IN/OUT (n,) upper bound of that distance
        int[::1] second_labels,              # IN/OUT (n,) second nearest centre of each row,
                                             #     or its nearest where none is listed (then
                                             #     lower_rest covers every other centre)
        floating[::1] lower,                 # IN/OUT (n,) lower bound of the distance to it
                                             #     (where listed)
        floating[::1] lower_rest,            # IN/OUT (n,) lower bound to any centre but those
                                             #     two
        floating[:, ::1] table_centers,      # IN/OUT (k, d) the centres where the neighbour
                                             #     lists were built (NaN: build them)
        int[:, ::1] table_index,             # IN/OUT (k, BALL_NEIGHBOURS) per centre, its
                                             #     nearest other centres
        floating[:, ::1] table_dist,         # IN/OUT (k, BALL_NEIGHBOURS) their distances then
        double[:, ::1] sums,                 # OUT (k, d) weighted sum of the rows of each
                                             #     cluster (IN/OUT with update_sums)
        double[::1] weight_sums,             # OUT (k,) summed weight of each cluster (IN/OUT
                                             #     with update_sums)
        int n_threads=1,
        bint update_sums=False,              # IN  sums and weight_sums are those of the labels
                                             #     passed in: add only what the pass changes
):
    """One Lloyd pass with Exponion's search and bounds: the same labels, sums and weights.

    Returns how many rows changed label.

    To start (or restart) the bounds, pass ``upper = inf``, ``lower = lower_rest = 0``, any
    valid labels and second labels, ``shift = 0`` and ``table_centers = NaN``. A row whose
    bounds fail is compared only with the centres near its own (up to BALL_NEIGHBOURS of
    them, listed per centre in O(k^2 d) whenever the centres have drifted far from where
    they were listed), or with all of them when its ball reaches past that list (for d > 4,
    also when it holds more than k / BALL_SEARCH_SHARE of them): in lloyd_pass's panels for
    d > 4, which lists no second centre. For d > 4 the ball's candidates are compared by
    lloyd_pass's scores too (_ball_search_dot).

    ``update_sums``: as in hamerly_pass.
    """
    if second_labels.shape[0] != X.shape[0] or lower_rest.shape[0] != X.shape[0]:
        raise ValueError("exponion_pass: array shapes do not match X and centers")
    if X.shape[0] == 0:
        raise ValueError("exponion_pass: X has no rows")
    return _bounded_pass(X, sample_weight, centers, shift, labels, upper, lower,
                         &second_labels[0], &lower_rest[0], table_centers, table_index,
                         table_dist, sums, weight_sums, n_threads, update_sums,
                         "exponion_pass")


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


cdef void _merge_chunk_changes(
        const double[:, ::1] chunk_acc,      # IN  (n_chunks, >= k * (d + 1)) as
                                             #     _accumulate_changes left them
        const unsigned char[:, ::1] touched, # IN  (n_chunks, k) as _accumulate_changes left them
        Py_ssize_t n_chunks,
        double[:, ::1] sums,                 # IN/OUT (k, d) weighted sums of the clusters
        double[::1] weight_sums,             # IN/OUT (k,) their weights
) noexcept nogil:
    """Add the chunks' changes in chunk order (as _merge_chunk_sums); a cluster left with
    zero weight gets zero sums, not the rounding residue of the rows that left it."""
    cdef Py_ssize_t k = sums.shape[0], d = sums.shape[1], c, j, f
    cdef const double* cluster
    for c in range(n_chunks):
        for j in range(k):
            if touched[c, j]:
                cluster = &chunk_acc[c, j * (d + 1)]
                for f in range(d):
                    sums[j, f] += cluster[f]
                weight_sums[j] += cluster[d]
    for j in range(k):
        if weight_sums[j] == 0:
            for f in range(d):
                sums[j, f] = 0


# ---------------------------------------------------------------------------------------------
# Filtering (d <= 4): Lloyd's pass on a tree of blocks of rows sorted along a Z-order curve
# (the filtering algorithm of Pelleg & Moore 1999 and Kanungo et al. 2002, on a fixed tree)
#
# zorder sorts the rows once along a Z-order (Morton) curve, so that consecutive rows lie
# close together. filter_tree cuts the sorted rows into blocks of BLOCK_ROWS rows, and
# FILTER_FANOUT consecutive nodes of a level make one node of the next, over FILTER_LEVELS
# levels. A node keeps the bounding box of its rows, their weighted sum and weight, their
# weighted mean and their weighted squared spread around that mean.
#
# filter_pass walks each top node down with a list of candidate centres: a centre whose
# nearest point of the node's box is farther than the farthest point of the box from another
# centre cannot be the nearest centre of any row of the node, and is dropped for the node and
# its children (with room for rounding: see _box_candidates). A node left with one candidate
# takes it for all its rows: its sums are added at once, its inertia is its spread plus its
# weight times |mean - centre|^2, and its labels are written only where they change. A block
# left with several candidates compares its rows with them in lloyd_pass's kernel, in index
# order. So the labels are lloyd_pass's, ties included; the sums are added in another order,
# so the centres agree with lloyd_pass's to rounding, not bit for bit.

cdef enum:
    # Child nodes per node of the filtering tree, and its levels: a top node holds
    # BLOCK_ROWS * FILTER_FANOUT ** (FILTER_LEVELS - 1) rows (16384) and is a parallel chunk.
    FILTER_FANOUT = 8
    FILTER_LEVELS = 4
    # Bits of a Z-order key; the highest ZORDER_SORTED_BITS are sorted (8 a feature at
    # d = 3: a cell of 1/256 of each range, finer than a block of the photo's colours), in
    # digits of RADIX_BITS bits: with 8, a chunk's rows go to 256 places at a time, whose
    # cache lines stay in the core's first-level cache. (With 2 passes of 11 bits, 2048
    # places, and the gather's prefetches 16 rows ahead into the second-level cache,
    # zorder_sort took 21 ms of two threads for the photo's 855k colours; now 12 to 14.)
    ZORDER_BITS = 32
    ZORDER_SORTED_BITS = 24
    RADIX_BITS = 8
    # zorder_sort's gather: rows prefetched this many rows ahead.
    GATHER_AHEAD = 48


cdef inline uint32_t _spread_bits(uint32_t q, Py_ssize_t d) noexcept nogil:
    """q's bits, each followed by d - 1 zero bits (q below 2 ** (ZORDER_BITS // d))."""
    if d == 2:
        q = (q | (q << 8)) & 0x00FF00FF
        q = (q | (q << 4)) & 0x0F0F0F0F
        q = (q | (q << 2)) & 0x33333333
        q = (q | (q << 1)) & 0x55555555
    elif d == 3:
        q = (q | (q << 16)) & 0x030000FF
        q = (q | (q << 8)) & 0x0300F00F
        q = (q | (q << 4)) & 0x030C30C3
        q = (q | (q << 2)) & 0x09249249
    elif d == 4:
        q = (q | (q << 12)) & 0x000F000F
        q = (q | (q << 6)) & 0x03030303
        q = (q | (q << 3)) & 0x11111111
    return q


def zorder_keys(const floating[:, ::1] X, int n_threads=1):
    """Each row's Z-order key (uint32): every feature scaled from its range in X onto
    ``32 // d`` bits (d = 1 to 4), the bits interleaved from the key's highest bit down,
    feature 0's highest first."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], i, f, n_chunks, chunk_rows, c
    if not 1 <= d <= MAX_UNROLLED_FEATURES:
        raise ValueError(f"zorder_keys: X must have 1 to {MAX_UNROLLED_FEATURES} columns, "
                         f"got {d}")
    cdef uint32_t[::1] keys = _empty(n, np.uint32)
    if n == 0:
        return np.asarray(keys)
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n * d * 8)
    # (numpy's X.min(axis=0) took 22 ms of one thread on the photo's 855k distinct colours)
    cdef double[:, ::1] chunk_low = _chunk_buffers(n_chunks, d)
    cdef double[:, ::1] chunk_high = _chunk_buffers(n_chunks, d)
    cdef double[::1] low = np.empty(d), scale = np.empty(d)
    cdef double top = <double>((<uint64_t>1 << (ZORDER_BITS // d)) - 1), q
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        _column_range(&X[0, 0], d, c * chunk_rows, min(n, (c + 1) * chunk_rows),
                      &chunk_low[c, 0], &chunk_high[c, 0])
    for f in range(d):
        low[f], q = chunk_low[0, f], chunk_high[0, f]
        for c in range(1, n_chunks):
            low[f], q = min(low[f], chunk_low[c, f]), max(q, chunk_high[c, f])
        scale[f] = top / (q - low[f]) if q > low[f] else 0  # (a constant feature: all 0)
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        if d == 3:  # colours: the feature loop unrolled
            _zorder_keys_d(&X[0, 0], 3, c * chunk_rows, min(n, (c + 1) * chunk_rows),
                           &low[0], &scale[0], top, &keys[0])
        else:
            _zorder_keys_d(&X[0, 0], d, c * chunk_rows, min(n, (c + 1) * chunk_rows),
                           &low[0], &scale[0], top, &keys[0])
    return np.asarray(keys)


cdef void _column_range(
        const floating* X, Py_ssize_t d,     # IN  (n, d) d <= MAX_UNROLLED_FEATURES
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows, at least one
        double* low, double* high,           # OUT (d,) each feature's lowest and highest
) noexcept nogil:
    # In local variables: through low and high, each row waited for the previous row's
    # stores.
    cdef floating lowest[MAX_UNROLLED_FEATURES]
    cdef floating highest[MAX_UNROLLED_FEATURES]
    cdef Py_ssize_t i, f
    for f in range(d):
        lowest[f] = X[start * d + f]
        highest[f] = X[start * d + f]
    for i in range(start, stop):
        for f in range(d):
            lowest[f] = min(lowest[f], X[i * d + f])
            highest[f] = max(highest[f], X[i * d + f])
    for f in range(d):
        low[f] = lowest[f]
        high[f] = highest[f]


cdef inline void _gather_rows_d(
        const floating* X, const floating* sample_weight, Py_ssize_t d,  # IN  (n, d), (n,)
        const uint64_t* packed,              # IN  (stop,) sorted keys, X's row in low 32 bits
        Py_ssize_t start, Py_ssize_t stop,   # IN  the sorted rows to fill
        Py_ssize_t n,                        # IN  rows in all
        Py_ssize_t* order,                   # OUT (n,) rows [start, stop) written
        floating* rows,                      # OUT (n, d) rows [start, stop) written
        floating* weights,                   # OUT (n,) rows [start, stop) written
) noexcept nogil:
    cdef Py_ssize_t i, j, ahead, f
    cdef uint64_t index_mask = 0xFFFFFFFF
    for i in range(start, stop):
        if i + GATHER_AHEAD < n:  # rows from all over X: fetch them early
            ahead = <Py_ssize_t>(packed[i + GATHER_AHEAD] & index_mask)
            fastkm_prefetch_near(X + ahead * d)
            fastkm_prefetch_near(X + ahead * d + d - 1)
            fastkm_prefetch_near(sample_weight + ahead)
        j = <Py_ssize_t>(packed[i] & index_mask)
        order[i] = j
        for f in range(d):
            rows[i * d + f] = X[j * d + f]
        weights[i] = sample_weight[j]


cdef void _gather_rows(const floating* X, const floating* sample_weight, Py_ssize_t d,
                       const uint64_t* packed, Py_ssize_t start, Py_ssize_t stop,
                       Py_ssize_t n, Py_ssize_t* order, floating* rows,
                       floating* weights) noexcept nogil:
    """_gather_rows_d, compiled separately for colours (d = 3)."""
    if d == 3:
        _gather_rows_d(X, sample_weight, 3, packed, start, stop, n, order, rows, weights)
    else:
        _gather_rows_d(X, sample_weight, d, packed, start, stop, n, order, rows, weights)


cdef inline void _zorder_keys_d(
        const floating* X, Py_ssize_t d,     # IN  (n, d)
        Py_ssize_t start, Py_ssize_t stop,   # IN  the rows to key
        const double* low, const double* scale, double top,  # IN  the features' scaling
        uint32_t* keys,                      # OUT (n,) rows [start, stop) written
) noexcept nogil:
    cdef Py_ssize_t i, f
    cdef uint32_t key
    cdef double q
    for i in range(start, stop):
        key = 0
        for f in range(d):
            q = (X[i * d + f] - low[f]) * scale[f]
            key = key | (_spread_bits(<uint32_t>(q if q < top else top), d) << (d - 1 - f))
        keys[i] = key << (ZORDER_BITS % d)  # (from the highest bit: the sort reads those)


cdef void _radix_count(
        const uint64_t* source,              # IN  the chunk's packed keys and indices
        Py_ssize_t n_rows, int shift,        # IN  the digit: bits shift to shift + RADIX_BITS
        Py_ssize_t* count,                   # OUT (1 << RADIX_BITS,) rows per digit
) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(1 << RADIX_BITS):
        count[i] = 0
    for i in range(n_rows):
        count[(source[i] >> shift) & ((1 << RADIX_BITS) - 1)] += 1


cdef void _radix_scatter(
        const uint64_t* source,              # IN  the chunk's packed keys and indices
        Py_ssize_t n_rows, int shift,        # IN  as for _radix_count
        Py_ssize_t* place,                   # IN/OUT (1 << RADIX_BITS,) where the chunk's
                                             #     next row of each digit goes
        uint64_t* target,                    # OUT the rows, by digit
) noexcept nogil:
    cdef Py_ssize_t i, digit
    for i in range(n_rows):
        digit = (source[i] >> shift) & ((1 << RADIX_BITS) - 1)
        target[place[digit]] = source[i]
        place[digit] += 1


def zorder_sort(const floating[:, ::1] X, const floating[::1] sample_weight,
                int n_threads=1):
    """X's rows sorted along a Z-order (Morton) curve (see zorder_keys), to the highest
    ZORDER_SORTED_BITS bits of the keys, rows of equal sorted bits in their order in X.

    Returns ``(order, rows, weights)``: np.intp indices into X, ``X[order]`` and
    ``sample_weight[order]``. A parallel radix sort of each row's sorted bits and index,
    packed in 64 bits (one array to move: with the rows moving too, 4 arrays, the passes
    took twice as long), whose chunks, hence whose result, do not depend on ``n_threads``;
    then a parallel gather of the rows. X may have at most 2**32 rows.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_chunks, chunk_rows, c, i, f, p, total
    cdef Py_ssize_t pass_, digit, j
    if sample_weight.shape[0] != n:
        raise ValueError("sample_weight must have one entry per row of X")
    if n > 0xFFFFFFFF:
        raise ValueError("zorder_sort: X has more than 2**32 rows")
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t[::1] order = _empty(n, np.intp)
    cdef floating[:, ::1] rows = _empty((n, d), dtype)
    cdef floating[::1] weights = _empty(n, dtype)
    if n == 0:
        return np.asarray(order), np.asarray(rows), np.asarray(weights)
    cdef uint32_t[::1] keys = zorder_keys(X, n_threads)
    cdef uint64_t[::1] packed = _empty(n, np.uint64)
    cdef uint64_t[::1] spare = _empty(n, np.uint64)
    cdef uint64_t* source = &packed[0]
    cdef uint64_t* target = &spare[0]
    cdef uint64_t* swap
    cdef uint64_t index_mask = 0xFFFFFFFF
    cdef int shift
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n * (d + 4))
    cdef Py_ssize_t[:, ::1] count = np.empty((n_chunks, 1 << RADIX_BITS), dtype=np.intp)
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        for i in range(c * chunk_rows, min(n, (c + 1) * chunk_rows)):
            source[i] = (<uint64_t>(keys[i] >> (ZORDER_BITS - ZORDER_SORTED_BITS)) << 32) | i
    with nogil:
        for pass_ in range(ZORDER_SORTED_BITS // RADIX_BITS):  # lowest digit first
            shift = 32 + pass_ * RADIX_BITS
            for c in prange(n_chunks, schedule="static", num_threads=n_threads):
                _radix_count(source + c * chunk_rows,
                             min(n, (c + 1) * chunk_rows) - c * chunk_rows, shift, &count[c, 0])
            # Each chunk's rows of a digit go after the rows of lower digits, and after
            # those of the same digit in earlier chunks: a stable sort.
            total = 0
            for digit in range(1 << RADIX_BITS):
                for c in range(n_chunks):
                    p = count[c, digit]
                    count[c, digit] = total
                    total += p
            for c in prange(n_chunks, schedule="static", num_threads=n_threads):
                _radix_scatter(source + c * chunk_rows,
                               min(n, (c + 1) * chunk_rows) - c * chunk_rows, shift,
                               &count[c, 0], target)
            swap, source, target = source, target, source
        for c in prange(n_chunks, schedule="static", num_threads=n_threads):
            _gather_rows(&X[0, 0], &sample_weight[0], d, source, c * chunk_rows,
                         min(n, (c + 1) * chunk_rows), n, &order[0], &rows[0, 0],
                         &weights[0])
    return np.asarray(order), np.asarray(rows), np.asarray(weights)


cdef inline void _block_summary_d(
        const floating* X,                   # IN  (n, d) d <= MAX_UNROLLED_FEATURES
        const floating* sample_weight,       # IN  (n,)
        Py_ssize_t n, Py_ssize_t d, Py_ssize_t block,
        double* box,                         # OUT (2, d) lowest, then highest values
        double* sums,                        # OUT (d + 1,) weighted sum of the rows, weight
        double* mean,                        # OUT (d,) weighted mean less the low corner
        double* spread,                      # OUT weighted sum of |x - mean|^2
) noexcept nogil:
    """filter_tree's summary of one block of rows (kept in local variables: through the
    output arrays, each row's updates waited for the previous row's)."""
    cdef double low[MAX_UNROLLED_FEATURES]
    cdef double high[MAX_UNROLLED_FEATURES]
    cdef double first[MAX_UNROLLED_FEATURES]
    cdef double shifted[MAX_UNROLLED_FEATURES]
    cdef double spread_part[MAX_UNROLLED_FEATURES]
    cdef double total[MAX_UNROLLED_FEATURES + 1]
    cdef double w, t, spread_sum = 0
    cdef Py_ssize_t r, f, start = block * BLOCK_ROWS, stop = min(n, (block + 1) * BLOCK_ROWS)
    for f in range(d):
        first[f] = X[start * d + f]
        low[f] = first[f]
        high[f] = first[f]
        total[f] = 0
        shifted[f] = 0
    total[d] = 0
    for r in range(start, stop):
        w = sample_weight[r]
        for f in range(d):
            low[f] = min(low[f], <double>X[r * d + f])
            high[f] = max(high[f], <double>X[r * d + f])
            total[f] += w * X[r * d + f]
            shifted[f] += w * (X[r * d + f] - first[f])  # (small numbers: see filter_tree)
        total[d] += w
    for f in range(d):
        box[f] = low[f]
        box[d + f] = high[f]
        sums[f] = total[f]
        mean[f] = shifted[f] / total[d] + (first[f] - low[f]) if total[d] > 0 else 0
    sums[d] = total[d]
    # A sum per feature: one sum over the features and rows made each row wait for d
    # multiply-adds in a chain (filter_tree on the photo's colours, one thread: 5.0 ms,
    # 3.4 with these).
    for f in range(d):
        spread_part[f] = 0
    for r in range(start, stop):
        for f in range(d):
            t = (X[r * d + f] - low[f]) - mean[f]
            spread_part[f] += sample_weight[r] * t * t
    for f in range(d):
        spread_sum += spread_part[f]
    spread[0] = spread_sum


def filter_tree(const floating[:, ::1] X, const floating[::1] sample_weight,
                int n_threads=1):
    """The nodes of filter_pass's tree over X's rows (sorted by zorder).

    Returns ``(offsets, boxes, sums, means, spreads)``: the nodes of level l (0: blocks of
    BLOCK_ROWS rows) are offsets[l] to offsets[l + 1] - 1; boxes (n_nodes, 2, d) the lowest,
    then the highest value of each feature; sums (n_nodes, d + 1) the weighted sum of the
    rows, then their weight; means (n_nodes, d) their weighted mean less the box's low
    corner (0 when the weight is 0); spreads (n_nodes,) their weighted sum of
    |x - mean|^2. All but offsets in float64. The means and spreads are computed from
    differences within the box (x - low), so that they keep their precision far from the
    origin (float64 rows near 2**30 that span 0.03: the inertia of nodes was 1e-6 off
    with absolute means).
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], level, node, child, first, last, b
    cdef Py_ssize_t r, f, n_nodes
    if n == 0:
        raise ValueError("filter_tree: X has no rows")
    if sample_weight.shape[0] != n:
        raise ValueError("sample_weight must have one entry per row of X")
    cdef Py_ssize_t[::1] offsets = np.zeros(FILTER_LEVELS + 1, dtype=np.intp)
    cdef Py_ssize_t size = (n + BLOCK_ROWS - 1) // BLOCK_ROWS
    for level in range(FILTER_LEVELS):
        offsets[level + 1] = offsets[level] + size
        size = (size + FILTER_FANOUT - 1) // FILTER_FANOUT
    n_nodes = offsets[FILTER_LEVELS]
    cdef double[:, :, ::1] boxes = _empty((n_nodes, 2, d), np.float64)
    cdef double[:, ::1] sums = _zeros((n_nodes, d + 1), np.float64)
    cdef double[:, ::1] means = _empty((n_nodes, d), np.float64)
    cdef double[::1] spreads = _zeros(n_nodes, np.float64)
    cdef double w, t
    cdef Py_ssize_t n_blocks = offsets[1]
    n_threads = _threads_for(n_blocks, n_threads, n * d * 8)
    for b in prange(n_blocks, nogil=True, schedule="static", num_threads=n_threads):
        if d == 3:  # colours: the feature loops unrolled
            _block_summary_d(&X[0, 0], &sample_weight[0], n, 3, b, &boxes[b, 0, 0],
                             &sums[b, 0], &means[b, 0], &spreads[b])
        else:
            _block_summary_d(&X[0, 0], &sample_weight[0], n, d, b, &boxes[b, 0, 0],
                             &sums[b, 0], &means[b, 0], &spreads[b])
    for level in range(1, FILTER_LEVELS):
        for node in range(offsets[level], offsets[level + 1]):
            first = offsets[level - 1] + (node - offsets[level]) * FILTER_FANOUT
            last = min(first + FILTER_FANOUT, offsets[level])
            for f in range(d):
                boxes[node, 0, f] = boxes[first, 0, f]
                boxes[node, 1, f] = boxes[first, 1, f]
            for child in range(first, last):
                for f in range(d):
                    boxes[node, 0, f] = min(boxes[node, 0, f], boxes[child, 0, f])
                    boxes[node, 1, f] = max(boxes[node, 1, f], boxes[child, 1, f])
                for f in range(d + 1):
                    sums[node, f] += sums[child, f]
            for f in range(d):  # the children's means less this node's low corner
                means[node, f] = 0
                for child in range(first, last):
                    means[node, f] += sums[child, d] * (
                        (boxes[child, 0, f] - boxes[node, 0, f]) + means[child, f])
                means[node, f] = means[node, f] / sums[node, d] if sums[node, d] > 0 else 0
            for child in range(first, last):  # spread around the node's mean
                t = 0
                for f in range(d):
                    t += ((boxes[child, 0, f] - boxes[node, 0, f]) + means[child, f]
                          - means[node, f]) ** 2
                spreads[node] += spreads[child] + sums[child, d] * t
    return (np.asarray(offsets), np.asarray(boxes), np.asarray(sums), np.asarray(means),
            np.asarray(spreads))


cdef struct _FilterTree:
    const Py_ssize_t* offsets        # (FILTER_LEVELS + 1,) see filter_tree
    const double* boxes              # (n_nodes, 2, d)
    const double* sums               # (n_nodes, d + 1)
    const double* means              # (n_nodes, d)
    const double* spreads            # (n_nodes,)
    const double* centres            # (k, d) the centres in float64
    Py_ssize_t n, k, d
    double relative_slack            # see _box_candidates
    double absolute_slack
    double max_threshold
    int* block_labels                # (n_blocks,) IN/OUT j >= 0: every row of the block
                                     #     is labelled j; -1: not known


cdef inline Py_ssize_t _box_candidates_d(
        const _FilterTree* t, Py_ssize_t node, Py_ssize_t d,
        const int* among, Py_ssize_t n_among,    # IN  candidates of the node's parent
        int* out,                                # OUT the node's candidates, in index order
) noexcept nogil:
    """The centres of ``among`` that may be nearest to a row of the node's box.

    Kanungo et al.'s test: with z the centre of ``among`` nearest to the box's midpoint,
    a centre c is dropped when even the corner v of the box farthest in the direction of
    c - z is nearer to z, since |x - c|^2 - |x - z|^2 is linear in x, lowest at v over the
    box. It is computed in float64 as sum (z - c) ((z - c) + 2 (v - z)), within a few units
    in the last place of float64 of |v - c|^2 + |v - z|^2 (written 2 v - c - z, its
    rounding grew with |v| instead, far from the origin: a review found float64 rows near
    2**14 whose nearest centre was dropped), and c is dropped only when that exceeds
    relative_slack times the largest |x - z|^2 over the box (1e-5 in float32, 1e-12 in
    float64) plus absolute_slack: then, for every row x of the box, the kernels' squared
    distances, within (d + 2) units in the last place of X's dtype of the true ones (a few
    of its smallest normal numbers at underflow), still rank c after z. Where the
    distances near X's dtype's overflow, nothing is dropped."""
    cdef const double* low = t.boxes + node * 2 * d
    cdef const double* high = low + d
    cdef const double* c
    cdef const double* z
    cdef double nearest = INFINITY, dist, far = 0, gap, slack, a
    cdef Py_ssize_t i, f, n_out = 0
    cdef int nearest_index = among[0]
    for i in range(n_among):
        c = t.centres + among[i] * d
        dist = 0
        for f in range(d):
            a = 0.5 * (low[f] + high[f]) - c[f]
            dist += a * a
        if dist < nearest:
            nearest, nearest_index = dist, among[i]
    z = t.centres + nearest_index * d
    for f in range(d):
        a = max(z[f] - low[f], high[f] - z[f])
        far += a * a
    if far >= t.max_threshold:
        for i in range(n_among):
            out[i] = among[i]
        return n_among
    slack = far * t.relative_slack + t.absolute_slack
    for i in range(n_among):
        c = t.centres + among[i] * d
        gap = 0
        for f in range(d):
            # (v - c) = (z - c) + (v - z), v_f the low or the high side, whichever gives
            # the lower term: a min, not a branch (which mispredicted: 1.4x slower passes)
            a = z[f] - c[f]
            gap += min(a * (a + 2 * (low[f] - z[f])), a * (a + 2 * (high[f] - z[f])))
        out[n_out] = among[i]
        n_out += not gap > slack
    return n_out


cdef inline void _take_node(
        const _FilterTree* t, Py_ssize_t level, Py_ssize_t node, int label,
        int* labels,                         # IN/OUT (n,)
        double* acc,                         # IN/OUT (k, d + 1)
        double* inertia,                     # IN/OUT
        Py_ssize_t* changed,                 # IN/OUT
) noexcept nogil:
    """Every row of the node goes to centre ``label``."""
    cdef Py_ssize_t d = t.d, node_id = t.offsets[level] + node, f, b, r, span = 1
    cdef const double* s = t.sums + node_id * (d + 1)
    cdef const double* m = t.means + node_id * d
    cdef const double* low = t.boxes + node_id * 2 * d
    cdef const double* c = t.centres + label * d
    cdef double dist = 0, a
    for f in range(d + 1):
        acc[label * (d + 1) + f] += s[f]
    for f in range(d):
        a = (low[f] - c[f]) + m[f]
        dist += a * a
    inertia[0] += t.spreads[node_id] + s[d] * dist
    for f in range(level):
        span *= FILTER_FANOUT
    for b in range(node * span, min((node + 1) * span, t.offsets[1])):
        if t.block_labels[b] != label:
            for r in range(b * BLOCK_ROWS, min(t.n, (b + 1) * BLOCK_ROWS)):
                changed[0] += labels[r] != label
                labels[r] = label
            t.block_labels[b] = label


cdef inline void _filter_block_d(
        const _FilterTree* t,
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,) or NULL: all 1
        const floating* centers,             # IN  (k, d)
        Py_ssize_t block, Py_ssize_t d,
        const int* candidates, Py_ssize_t n_candidates,
        floating* scratch,                   # (n_candidates * d + BLOCK_ROWS * d,)
        int* labels,                         # IN/OUT (n,)
        double* acc,                         # IN/OUT (k, d + 1)
        double* inertia,                     # IN/OUT
        Py_ssize_t* changed,                 # IN/OUT
) noexcept nogil:
    """The rows of a block compared with its candidates in lloyd_pass's kernel."""
    cdef Py_ssize_t start = block * BLOCK_ROWS, i, f, n_real, n_changed = 0
    cdef floating* chosen = scratch
    cdef const floating* rows = X + start * d
    cdef floating best[BLOCK_ROWS]
    cdef int label[BLOCK_ROWS]
    cdef int j, uniform
    cdef double w, block_inertia = 0
    cdef double* cluster
    n_real = min(<Py_ssize_t>BLOCK_ROWS, t.n - start)
    for i in range(n_candidates):
        for f in range(d):
            chosen[i * d + f] = centers[candidates[i] * d + f]
    if n_real < BLOCK_ROWS:  # lanes past the end repeat the last row, as in lloyd_pass
        for i in range(BLOCK_ROWS):
            for f in range(d):
                scratch[(n_candidates + i) * d + f] = rows[min(i, n_real - 1) * d + f]
        rows = scratch + n_candidates * d
    if floating is float:
        fastkm_small_block_nearest_f(rows, chosen, n_candidates, d, best, label)
    else:
        fastkm_small_block_nearest_d(rows, chosen, n_candidates, d, best, label)
    # Neighbouring rows mostly share a centre: their sums run in registers (run, at most 4
    # features and the weight), added to the centre's when the centre changes. (Added to
    # memory row by row, each waited for the previous one's store.)
    cdef double run[MAX_UNROLLED_FEATURES + 1]
    cdef int run_label = candidates[label[0]]
    uniform = run_label
    for f in range(d + 1):
        run[f] = 0
    for i in range(n_real):
        j = candidates[label[i]]
        if j != run_label:
            cluster = acc + run_label * (d + 1)
            for f in range(d + 1):
                cluster[f] += run[f]
                run[f] = 0
            run_label = j
            uniform = -1
        w = sample_weight[start + i] if sample_weight != NULL else 1
        n_changed += labels[start + i] != j
        labels[start + i] = j
        for f in range(d):
            run[f] = fastkm_madd(w, X[(start + i) * d + f], run[f])
        run[d] += w
        block_inertia += w * best[i]
    cluster = acc + run_label * (d + 1)
    for f in range(d + 1):
        cluster[f] += run[f]
    t.block_labels[block] = uniform
    changed[0] += n_changed
    inertia[0] += block_inertia


cdef void _filter_node(
        const _FilterTree* t,
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,) or NULL: all 1
        const floating* centers,             # IN  (k, d)
        Py_ssize_t level, Py_ssize_t node,   # IN  the node: its level and index in it
        const int* among, Py_ssize_t n_among,  # IN the parent's candidates
        int* lists,                          # scratch (FILTER_LEVELS, k)
        floating* scratch,                   # scratch ((k + BLOCK_ROWS) * d,)
        int* labels,                         # IN/OUT (n,)
        double* acc,                         # IN/OUT (k, d + 1)
        double* inertia,                     # IN/OUT
        Py_ssize_t* changed,                 # IN/OUT
) noexcept nogil:
    cdef int* candidates = lists + level * t.k
    cdef Py_ssize_t n_candidates, child
    if t.d == 3:  # colours: the feature loops unrolled
        n_candidates = _box_candidates_d(t, t.offsets[level] + node, 3, among, n_among,
                                         candidates)
    else:
        n_candidates = _box_candidates_d(t, t.offsets[level] + node, t.d, among, n_among,
                                         candidates)
    if n_candidates == 1:
        _take_node(t, level, node, candidates[0], labels, acc, inertia, changed)
    elif level == 0 and t.d == 3:
        _filter_block_d(t, X, sample_weight, centers, node, 3, candidates, n_candidates,
                        scratch, labels, acc, inertia, changed)
    elif level == 0:
        _filter_block_d(t, X, sample_weight, centers, node, t.d, candidates, n_candidates,
                        scratch, labels, acc, inertia, changed)
    else:
        for child in range(node * FILTER_FANOUT,
                           min((node + 1) * FILTER_FANOUT,
                               t.offsets[level] - t.offsets[level - 1])):
            _filter_node(t, X, sample_weight, centers, level - 1, child, candidates,
                         n_candidates, lists, scratch, labels, acc, inertia, changed)


def filter_pass(
        const floating[:, ::1] X,            # IN  (n, d) rows, d <= 4, sorted by zorder
        const floating[::1] sample_weight,   # IN  (n,) or None: all 1
        tuple tree,                          # IN  filter_tree(X, sample_weight or ones)
        const floating[:, ::1] centers,      # IN  (k, d) current centres
        int[::1] labels,                     # IN/OUT (n,) nearest centre of each row
        int[::1] block_labels,               # IN/OUT (n_blocks,) j >= 0: every row of the
                                             #     block is labelled j; -1 (start): not known
        double[:, ::1] sums,                 # OUT (k, d) weighted sum of the rows of each cluster
        double[::1] weight_sums,             # OUT (k,) summed weight of each cluster
        int n_threads=1,
):
    """lloyd_pass on the tree of filter_tree: the same labels, inertia and sums up to the
    order of the additions. Returns ``(inertia, n_changed)`` as lloyd_pass does.

    ``labels`` and ``block_labels`` must be those the previous pass left (or ``labels`` all
    -1 and ``block_labels`` all -1): a label changed elsewhere needs ``block_labels`` reset
    to -1.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0], top, c
    cdef const floating* weights = NULL
    cdef const Py_ssize_t[::1] offsets = tree[0]
    cdef const double[:, :, ::1] boxes = tree[1]
    cdef const double[:, ::1] node_sums = tree[2]
    cdef const double[:, ::1] means = tree[3]
    cdef const double[::1] spreads = tree[4]
    if not 1 <= d <= MAX_UNROLLED_FEATURES or n == 0:
        raise ValueError(f"filter_pass: X must have rows and 1 to {MAX_UNROLLED_FEATURES} "
                         "columns")
    if sample_weight is not None:
        _check_shapes(X, sample_weight, centers)
        weights = &sample_weight[0]
    elif centers.shape[1] != d or k < 1:
        raise ValueError("centers must have as many columns as X, and one row at least")
    if offsets.shape[0] != FILTER_LEVELS + 1 or offsets[1] != (n + BLOCK_ROWS - 1) // BLOCK_ROWS \
            or boxes.shape[0] != offsets[FILTER_LEVELS] or boxes.shape[2] != d \
            or node_sums.shape[0] != boxes.shape[0] or node_sums.shape[1] != d + 1 \
            or means.shape[0] != boxes.shape[0] or means.shape[1] != d \
            or spreads.shape[0] != boxes.shape[0]:
        raise ValueError("filter_pass: tree does not match X (see filter_tree)")
    if labels.shape[0] != n or block_labels.shape[0] != offsets[1] or sums.shape[0] != k \
            or sums.shape[1] != d or weight_sums.shape[0] != k:
        raise ValueError("filter_pass: output arrays do not match X and centers")
    cdef Py_ssize_t n_top = offsets[FILTER_LEVELS] - offsets[FILTER_LEVELS - 1]
    n_threads = _threads_for(n_top, n_threads, n * d * 8)
    cdef double[:, ::1] centres = np.asarray(centers, dtype=np.float64)
    cdef int[::1] everyone = np.arange(k, dtype=np.int32)
    cdef int[:, ::1] lists = np.empty((n_threads, FILTER_LEVELS * k), dtype=np.int32)
    cdef floating[:, ::1] scratch = np.empty(
        (n_threads, (k + BLOCK_ROWS) * d), dtype=np.float32 if floating is float else np.float64)
    cdef double[:, ::1] top_acc = _chunk_buffers(n_top, k * (d + 1))
    cdef double[:, ::1] top_inertia = _chunk_buffers(n_top, 1)
    cdef Py_ssize_t[::1] top_changed = np.zeros(n_top, dtype=np.intp)
    cdef _FilterTree t
    t.offsets = &offsets[0]
    t.boxes = &boxes[0, 0, 0]
    t.sums = &node_sums[0, 0]
    t.means = &means[0, 0]
    t.spreads = &spreads[0]
    t.centres = &centres[0, 0]
    t.n, t.k, t.d = n, k, d
    if floating is float:
        t.relative_slack, t.absolute_slack, t.max_threshold = 1e-5, 4 * d * FLT_MIN, 1e37
    else:
        t.relative_slack, t.absolute_slack, t.max_threshold = 1e-12, 4 * d * DBL_MIN, 1e307
    t.block_labels = &block_labels[0]
    cdef double inertia = 0
    for top in prange(n_top, nogil=True, schedule="dynamic", num_threads=n_threads):
        c = threadid()
        _filter_node(&t, &X[0, 0], weights, &centers[0, 0], FILTER_LEVELS - 1, top,
                     &everyone[0], k, &lists[c, 0], &scratch[c, 0],
                     &labels[0], &top_acc[top, 0], &top_inertia[top, 0], &top_changed[top])
    _merge_chunk_sums(top_acc, n_top, 1, sums, weight_sums)
    for top in range(n_top):
        inertia += top_inertia[top, 0]
    return inertia, int(np.sum(top_changed))


# ---------------------------------------------------------------------------------------------
# Yinyang: the Lloyd pass with one upper bound per row and one lower bound per group of centres
# (simplified Yinyang: Ding et al. 2015, "Yinyang K-means", as simplified by Newling & Fleuret
# 2016, "Fast k-means with accurate bounds")
#
# The centres are split into groups once (see fastkm._yinyang). Per row it keeps an upper
# bound on the distance to its centre and, per group, a lower bound on the distance to the
# group's other centres. A centre moving lowers its group's bound by the group's largest shift.
# A row whose upper bound is below every group's bound keeps its centre, untouched; for the
# others, the distance to their centre is computed, and then only the groups whose bound is
# still below it are searched: at once for the groups that half of a batch of GROUP_ROWS rows
# needs, else through a queue per group, so that the centres of a group are compared with
# GROUP_ROWS rows at a time. Blocks whose bounds were reset (upper = inf), or with more than
# 1 / YINYANG_BLOCK_SEARCH_SHARE of their rows' group bounds failing, are compared with every
# centre in lloyd_pass's panels instead (_search_block). Bounds are stored in X's dtype,
# rounded outwards, and moved by the shifts with outward rounding too.
#
# Exactness. A row's centre is the one lloyd_pass would choose, ties included, because every
# score compared is computed with lloyd_pass's arithmetic (the direct form of _lloyd_chunk_d
# for d <= MAX_UNROLLED_FEATURES, the dot-product form of its panels above, from the same
# shifted centres and the same constant terms, the same operations in the same feature
# order: see fastkm_group_scores below), and a group is left out only when its bound
# proves that every score in it is above the row's current score with room for the rounding
# of both (see _Slack). The scores that survive are compared with ties to the lowest index, so
# the result is lloyd_pass's argmin over all centres. The sums are accumulated as in
# _lloyd_chunk_d, hence bit-identical.

cdef extern from *:
    """
    /* Scores of one group of centres for FASTKM_GROUP_ROWS rows, with lloyd_pass's
    arithmetic: for row r and centre slot g of the group,

        x_f = xs[r * d + f], c_f = group[f * width + g]
        score = base[g] - sum over f of x_f * c_f       (dot-product form, d > 4)
        score = base[g] + sum over f of (x_f - c_f)^2   (direct form, d <= 4, "_direct")

    summed in feature order from zero, with the same operations (so the same FMAs), hence
    bit-identical to fastkm_block_nearest's (dot form) and to _lloyd_chunk_d's (direct form,
    with base = 0). The centres go in vector lanes (width, a multiple of FASTKM_GROUP_LANES(T),
    is the padded group size) and rows in separate accumulators: one row at a time would be a
    chain of dependent FMAs. */
    #define FASTKM_GROUP_ROWS 8
    #if FASTKM_VECTOR_EXTENSIONS
    /* 256-bit vectors at most: groups are small, and padding them to 512 bits wastes more
       than 512-bit FMAs gain (on Zen 4, none: it splits them in two). */
    #define FASTKM_GROUP_VBYTES (FASTKM_VBYTES < 32 ? FASTKM_VBYTES : 32)
    #define FASTKM_GROUP_LANES(T) (FASTKM_GROUP_VBYTES / (int)sizeof(T))
    #define FASTKM_DEFINE_GROUP_SCORES(NAME, T, DIRECT)                                       \\
    static void NAME(const T* xs, const T* group, const T* base, Py_ssize_t d,                \\
                     Py_ssize_t width, T* scores) {                                           \\
        typedef T vec __attribute__((vector_size(FASTKM_GROUP_VBYTES)));                      \\
        enum { W = FASTKM_GROUP_VBYTES / (int)sizeof(T) };                                    \\
        for (Py_ssize_t v = 0; v < width; v += W) {                                           \\
            vec acc[FASTKM_GROUP_ROWS];                                                       \\
            _Pragma("GCC unroll 8")                                                           \\
            for (int r = 0; r < FASTKM_GROUP_ROWS; r++) acc[r] = (vec){0};                    \\
            for (Py_ssize_t f = 0; f < d; f++) {                                              \\
                vec c;                                                                        \\
                __builtin_memcpy(&c, group + f * width + v, sizeof(vec));                     \\
                _Pragma("GCC unroll 8")                                                       \\
                for (int r = 0; r < FASTKM_GROUP_ROWS; r++) {                                 \\
                    if (DIRECT) {                                                             \\
                        vec t = xs[r * d + f] - c;                                            \\
                        acc[r] += t * t;                                                      \\
                    } else {                                                                  \\
                        acc[r] += xs[r * d + f] * c;                                          \\
                    }                                                                         \\
                }                                                                             \\
            }                                                                                 \\
            vec b;                                                                            \\
            __builtin_memcpy(&b, base + v, sizeof(vec));                                      \\
            _Pragma("GCC unroll 8")                                                           \\
            for (int r = 0; r < FASTKM_GROUP_ROWS; r++) {                                     \\
                vec s = DIRECT ? b + acc[r] : b - acc[r];                                     \\
                __builtin_memcpy(scores + r * width + v, &s, sizeof(vec));                    \\
            }                                                                                 \\
        }                                                                                     \\
    }
    #else
    #define FASTKM_GROUP_LANES(T) 4
    #define FASTKM_DEFINE_GROUP_SCORES(NAME, T, DIRECT)                                       \\
    static void NAME(const T* xs, const T* group, const T* base, Py_ssize_t d,                \\
                     Py_ssize_t width, T* scores) {                                           \\
        for (int r = 0; r < FASTKM_GROUP_ROWS; r++)                                           \\
            for (Py_ssize_t g = 0; g < width; g++) {                                          \\
                T acc = 0;                                                                    \\
                for (Py_ssize_t f = 0; f < d; f++) {                                          \\
                    if (DIRECT) {                                                             \\
                        T t = xs[r * d + f] - group[f * width + g];                           \\
                        acc = FASTKM_MADD(T)(t, t, acc);                                      \\
                    } else {                                                                  \\
                        acc = FASTKM_MADD(T)(xs[r * d + f], group[f * width + g], acc);       \\
                    }                                                                         \\
                }                                                                             \\
                scores[r * width + g] = DIRECT ? base[g] + acc : base[g] - acc;               \\
            }                                                                                 \\
    }
    #endif
    /* The same score, for FASTKM_GROUP_ROWS rows each with its own centre (centres[r], a
    row of d values, and base[r]): one accumulator per row, the same operations. Here gcc
    would vectorize the products over features and add them in order, unfused, which rounds
    differently from the micro-kernels' FMAs (contracted where the ISA has them): so the FMA
    is explicit (FASTKM_MADD). */
    #define FASTKM_DEFINE_ROW_SCORES(NAME, T, DIRECT)                                         \\
    static void NAME(const T* xs, const T** centres, const T* base, Py_ssize_t d,             \\
                     T* scores) {                                                             \\
        T acc[FASTKM_GROUP_ROWS];                                                             \\
        for (int r = 0; r < FASTKM_GROUP_ROWS; r++) acc[r] = 0;                               \\
        for (Py_ssize_t f = 0; f < d; f++) {                                                  \\
            _Pragma("GCC unroll 8")                                                           \\
            for (int r = 0; r < FASTKM_GROUP_ROWS; r++) {                                     \\
                if (DIRECT) {                                                                 \\
                    T t = xs[r * d + f] - centres[r][f];                                      \\
                    acc[r] = FASTKM_MADD(T)(t, t, acc[r]);                                    \\
                } else {                                                                      \\
                    acc[r] = FASTKM_MADD(T)(xs[r * d + f], centres[r][f], acc[r]);            \\
                }                                                                             \\
            }                                                                                 \\
        }                                                                                     \\
        for (int r = 0; r < FASTKM_GROUP_ROWS; r++)                                           \\
            scores[r] = DIRECT ? base[r] + acc[r] : base[r] - acc[r];                         \\
    }
    /* fastkm_panel_scores[_direct]_{f,d}(block_t, panel, base, d, scores): the scores of
    the FASTKM_PANEL centres g of the panel for the FASTKM_BLOCK_ROWS rows r of the block,
    written out to scores[g * FASTKM_BLOCK_ROWS + r]: those fastkm_block_nearest compares
    (the same accumulation code, hence bit-identical), or with DIRECT those of the direct
    form, for d <= 4. */
    #if FASTKM_VECTOR_EXTENSIONS
    #define FASTKM_DEFINE_PANEL_SCORES(NAME, T, DIRECT)                                       \\
    static void NAME(const T* block_t, const T* panel, const T* base, Py_ssize_t d,            \\
                     T* scores) {                                                             \\
        typedef T vec __attribute__((vector_size(FASTKM_VBYTES)));                            \\
        enum { W = FASTKM_VBYTES / (int)sizeof(T) };                                          \\
        for (int r0 = 0; r0 < FASTKM_BLOCK_ROWS; r0 += 2 * W) {                               \\
            FASTKM_PANEL_ACCUMULATE(T, DIRECT)                                                \\
            _Pragma("GCC unroll 16")                                                          \\
            for (int g = 0; g < FASTKM_PANEL; g++) {                                          \\
                vec s0 = DIRECT ? base[g] + acc0[g] : base[g] - acc0[g];                      \\
                vec s1 = DIRECT ? base[g] + acc1[g] : base[g] - acc1[g];                      \\
                __builtin_memcpy(scores + g * FASTKM_BLOCK_ROWS + r0, &s0, sizeof(vec));      \\
                __builtin_memcpy(scores + g * FASTKM_BLOCK_ROWS + r0 + W, &s1, sizeof(vec));  \\
            }                                                                                 \\
        }                                                                                     \\
    }
    #else
    #define FASTKM_DEFINE_PANEL_SCORES(NAME, T, DIRECT)                                       \\
    static void NAME(const T* block_t, const T* panel, const T* base, Py_ssize_t d,            \\
                     T* scores) {                                                             \\
        T dots[FASTKM_PANEL * FASTKM_BLOCK_ROWS];                                             \\
        for (int i = 0; i < FASTKM_PANEL * FASTKM_BLOCK_ROWS; i++) dots[i] = 0;               \\
        for (Py_ssize_t f = 0; f < d; f++)                                                    \\
            for (int g = 0; g < FASTKM_PANEL; g++)                                            \\
                for (int r = 0; r < FASTKM_BLOCK_ROWS; r++)                                   \\
                    if (DIRECT) {                                                             \\
                        T t = block_t[f * FASTKM_BLOCK_ROWS + r] - panel[f * FASTKM_PANEL + g]; \\
                        dots[g * FASTKM_BLOCK_ROWS + r] = FASTKM_MADD(T)(                     \\
                            t, t, dots[g * FASTKM_BLOCK_ROWS + r]);                           \\
                    } else {                                                                  \\
                        dots[g * FASTKM_BLOCK_ROWS + r] = FASTKM_MADD(T)(                     \\
                            block_t[f * FASTKM_BLOCK_ROWS + r], panel[f * FASTKM_PANEL + g],  \\
                            dots[g * FASTKM_BLOCK_ROWS + r]);                                 \\
                    }                                                                         \\
        for (int g = 0; g < FASTKM_PANEL; g++)                                                \\
            for (int r = 0; r < FASTKM_BLOCK_ROWS; r++)                                       \\
                scores[g * FASTKM_BLOCK_ROWS + r] = DIRECT                                    \\
                    ? base[g] + dots[g * FASTKM_BLOCK_ROWS + r]                               \\
                    : base[g] - dots[g * FASTKM_BLOCK_ROWS + r];                              \\
    }
    #endif
    FASTKM_DEFINE_PANEL_SCORES(fastkm_panel_scores_f, float, 0)
    FASTKM_DEFINE_PANEL_SCORES(fastkm_panel_scores_d, double, 0)
    FASTKM_DEFINE_PANEL_SCORES(fastkm_panel_scores_direct_f, float, 1)
    FASTKM_DEFINE_PANEL_SCORES(fastkm_panel_scores_direct_d, double, 1)
    FASTKM_DEFINE_GROUP_SCORES(fastkm_group_scores_f, float, 0)
    FASTKM_DEFINE_GROUP_SCORES(fastkm_group_scores_d, double, 0)
    FASTKM_DEFINE_GROUP_SCORES(fastkm_group_scores_direct_f, float, 1)
    FASTKM_DEFINE_GROUP_SCORES(fastkm_group_scores_direct_d, double, 1)
    FASTKM_DEFINE_ROW_SCORES(fastkm_row_scores_f, float, 0)
    FASTKM_DEFINE_ROW_SCORES(fastkm_row_scores_d, double, 0)
    FASTKM_DEFINE_ROW_SCORES(fastkm_row_scores_direct_f, float, 1)
    FASTKM_DEFINE_ROW_SCORES(fastkm_row_scores_direct_d, double, 1)
    """
    enum: FASTKM_GROUP_ROWS
    int FASTKM_GROUP_LANES_F "FASTKM_GROUP_LANES(float)"
    int FASTKM_GROUP_LANES_D "FASTKM_GROUP_LANES(double)"
    void fastkm_group_scores_f(const float* xs, const float* group, const float* base,
                               Py_ssize_t d, Py_ssize_t width, float* scores) noexcept nogil
    void fastkm_group_scores_d(const double* xs, const double* group, const double* base,
                               Py_ssize_t d, Py_ssize_t width, double* scores) noexcept nogil
    void fastkm_group_scores_direct_f(const float* xs, const float* group, const float* base,
                                      Py_ssize_t d, Py_ssize_t width,
                                      float* scores) noexcept nogil
    void fastkm_group_scores_direct_d(const double* xs, const double* group,
                                      const double* base, Py_ssize_t d, Py_ssize_t width,
                                      double* scores) noexcept nogil
    void fastkm_panel_scores_f(const float* block_t, const float* panel, const float* base,
                               Py_ssize_t d, float* scores) noexcept nogil
    void fastkm_panel_scores_d(const double* block_t, const double* panel,
                               const double* base, Py_ssize_t d, double* scores) noexcept nogil
    void fastkm_panel_scores_direct_f(const float* block_t, const float* panel,
                                      const float* base, Py_ssize_t d,
                                      float* scores) noexcept nogil
    void fastkm_panel_scores_direct_d(const double* block_t, const double* panel,
                                      const double* base, Py_ssize_t d,
                                      double* scores) noexcept nogil
    void fastkm_row_scores_f(const float* xs, const float** centres, const float* base,
                             Py_ssize_t d, float* scores) noexcept nogil
    void fastkm_row_scores_d(const double* xs, const double** centres, const double* base,
                             Py_ssize_t d, double* scores) noexcept nogil
    void fastkm_row_scores_direct_f(const float* xs, const float** centres,
                                    const float* base, Py_ssize_t d,
                                    float* scores) noexcept nogil
    void fastkm_row_scores_direct_d(const double* xs, const double** centres,
                                    const double* base, Py_ssize_t d,
                                    double* scores) noexcept nogil


cdef struct _Slack:
    # Rounding allowances that make the bounds rigorous for lloyd_pass's computed scores.
    # eps is the unit roundoff of X's dtype. Direct form: a score S_j of true distance D_j
    # lies in [D_j^2 (1 - rho) - eta, D_j^2 (1 + rho) + eta] (rho covers the rounding of the
    # d differences, squares and additions, eta underflow). Dot form: with x' = x - shift
    # and c'_j = c_j - shift as rounded, |x'| <= N and radius R >= max |c'_j|, the computed
    # 2 S_j + |x'|^2 is within e2 (see _dot_e2) of |x' - c'_j|^2, and |x' - c'_j| within
    # alpha = 4 eps (N + R) of D_j (rounding of the shifts, plus that of the square roots
    # here). The score is S_j = fl(b_j - a_j): a_j, the dot product x'.c'_j summed in d
    # roundings (with FMAs or not), is within gamma_d N R of it (Higham, Accuracy and
    # Stability, eq. 3.5; gamma_d = d eps / (1 - d eps)); b_j, |c'_j|^2 / 2 summed in float64
    # and rounded to the dtype, within (eps + (d + 1) 2^-53) R^2 / 2 of it; the subtraction
    # adds at most eps (R^2 / 2 + N R) (1 + gamma_d). |x'|^2, summed in float64, is within
    # (d + 1) 2^-53 N^2 of its value. Doubled (2 S_j) and with a 2^-10 relative margin for
    # the second-order terms: e2 = coef N R + coef_base R^2 + coef_norm N^2 + eta. (This is
    # about 6 times tighter than the earlier coef (N + R)^2 with coef = 3 (d + 4) eps, whose
    # extra allowance cost Yinyang most of its skipped rows on blobs 200k x 128.)
    bint dot_form
    double eps
    double rho
    double coef
    double coef_base
    double coef_norm
    double radius
    double eta


cdef _Slack _rounding_slack(bint dot_form, Py_ssize_t d, double max_base,
                           bint single) noexcept nogil:
    """The allowances for lloyd_pass's scores of d features in float32 (single) or float64;
    max_base is the largest constant term |c'|^2 / 2 of the dot form (see _pack_panels)."""
    cdef _Slack s
    cdef double gamma, margin = 1 + 2.0 ** -10
    s.dot_form = dot_form
    s.eps = (FLT_EPSILON if single else DBL_EPSILON) / 2
    s.rho = (d + 5) * s.eps
    gamma = d * s.eps / (1 - d * s.eps)
    s.coef = 2 * (gamma + s.eps) * margin
    s.coef_base = (2 * s.eps + (d + 1) * 2.0 ** -52) * margin
    s.coef_norm = (d + 1) * 2.0 ** -53 * margin
    s.radius = 0
    if dot_form:
        # base = |c'|^2 / 2, rounded to X's dtype: 4 eps covers that rounding.
        s.radius = sqrt(2 * max_base) * (1 + 4 * s.eps)
    s.eta = (2 * d + 8) * (FLT_MIN if single else DBL_MIN)
    return s


cdef inline double _dot_e2(const _Slack* s, double norm) noexcept nogil:
    """e2 of the dot form (see _Slack) for a row with |x'| <= norm."""
    return (norm * (s.coef * s.radius + s.coef_norm * norm)
            + s.coef_base * s.radius * s.radius + s.eta)


def dot_score_allowance(Py_ssize_t n_features, double max_base, double norm, bint single):
    """How far the dot form's computed ``2 S_j + |x'|^2`` may lie from ``|x' - c'_j|^2``
    (e2 of the bounded passes' rounding allowances) for a row with ``|x'| <= norm``, centres
    whose constant terms are at most ``max_base``, in float32 (``single``) or float64.
    Exposed for tests."""
    cdef _Slack s = _rounding_slack(True, n_features, max_base, single)
    return _dot_e2(&s, norm)


cdef inline double _skip_threshold(double u, const _Slack* s) noexcept nogil:
    """How far every other centre must be for a row whose distance to its own centre is at
    most u to keep it: beyond that, every other centre's score is strictly above its own."""
    cdef double norm, e2, alpha
    if not s.dot_form:  # l^2 (1 - rho) - eta > u^2 (1 + rho) + eta
        return sqrt((u * u * (1 + s.rho) + 2 * s.eta) / (1 - s.rho)) * (1 + 4 * s.eps)
    norm = (u + s.radius) * (1 + 4 * s.eps)  # |x'| <= |x - c_a| + |c_a - shift|
    e2 = _dot_e2(s, norm)
    alpha = 4 * s.eps * (norm + s.radius)
    # (l - alpha)^2 - e2 > (u + alpha)^2 + e2
    return alpha + sqrt((u + alpha) * (u + alpha) + 2 * e2)


cdef struct _RowBounds:
    # A row's conversions from computed scores to distance bounds, under the _Slack
    # allowances: a distance is at most sqrt(max(0, a_hi * score + b_hi)) * m_hi + c_hi and
    # at least sqrt(max(0, a_lo * score + b_lo)) * m_lo - c_lo (m and c also cover the
    # rounding of these operations).
    double a_hi, b_hi, m_hi, c_hi, a_lo, b_lo, m_lo, c_lo


cdef inline _RowBounds _row_bounds(const _Slack* s, double sq_norm) noexcept nogil:
    """The conversions for a row with |x - shift|^2 = sq_norm (dot form; unused otherwise)."""
    cdef _RowBounds r
    cdef double norm, e2
    if not s.dot_form:
        r.a_hi, r.b_hi = 1 / (1 - s.rho), s.eta / (1 - s.rho)
        r.a_lo, r.b_lo = 1 / (1 + s.rho), -s.eta / (1 + s.rho)
        r.m_hi, r.m_lo, r.c_hi, r.c_lo = 1 + 4 * s.eps, 1 - 4 * s.eps, 0, 0
    else:
        norm = sqrt(sq_norm) * (1 + s.rho)
        e2 = _dot_e2(s, norm)
        r.a_hi, r.b_hi = 2, sq_norm + e2
        r.a_lo, r.b_lo = 2, sq_norm - e2
        r.m_hi, r.m_lo = 1, 1
        r.c_hi = r.c_lo = 4 * s.eps * (norm + s.radius)
    return r


cdef inline double _dist_above(double score, const _RowBounds* r) noexcept nogil:
    """An upper bound of the distance to a centre of computed score ``score``; also the
    distance a group's lower bound must exceed for all its scores to be above ``score``."""
    return sqrt(max(0.0, r.a_hi * score + r.b_hi)) * r.m_hi + r.c_hi


cdef inline double _dist_below(double score, const _RowBounds* r) noexcept nogil:
    """A lower bound of the distance to a centre of computed score ``score``."""
    return sqrt(max(0.0, r.a_lo * score + r.b_lo)) * r.m_lo - r.c_lo


cdef extern from *:
    """
    /* A bound in float, rounded outwards, without branches: scaling by 1 -+ 2^-23 moves v by
    more than the half unit in the last place that the conversion may round it back, and
    2^-149 covers subnormals. Infinity stays infinity. A lower bound only needs to stay
    below the distance, which is not negative, so negative values may move either way. */
    static inline float fastkm_float_above(double v) {
        return (float)(v * (1 + 0x1p-23) + 0x1p-149);
    }
    static inline float fastkm_float_below(double v) {
        return (float)(v * (1 - 0x1p-23) - 0x1p-149);
    }
    """
    float fastkm_float_above(double v) noexcept nogil
    float fastkm_float_below(double v) noexcept nogil


cdef inline floating _round_up(double v, floating kind) noexcept nogil:
    """v in X's dtype, rounded towards +inf (kind only selects the dtype)."""
    if floating is float:
        return fastkm_float_above(v)
    else:
        return v


cdef inline floating _round_down(double v, floating kind) noexcept nogil:
    if floating is float:
        return fastkm_float_below(v)
    else:
        return v


cdef inline double _sq_norm(const floating* x, Py_ssize_t d) noexcept nogil:
    """|x|^2 in float64 (interleaved partial sums, as _sq_distance)."""
    cdef double part[SQ_DISTANCE_WAYS]
    cdef double total = 0
    cdef Py_ssize_t f, j, d_main = d - d % SQ_DISTANCE_WAYS
    for j in range(SQ_DISTANCE_WAYS):
        part[j] = 0
    for f from 0 <= f < d_main by SQ_DISTANCE_WAYS:
        for j in range(SQ_DISTANCE_WAYS):
            part[j] += <double>x[f + j] * <double>x[f + j]
    for f in range(d_main, d):
        total += <double>x[f] * <double>x[f]
    for j in range(SQ_DISTANCE_WAYS):
        total += part[j]
    return total


cdef struct _YinyangCentres:
    # The centres as the pass reads them (built by yinyang_pass). Pointers to X's dtype are
    # void: a struct cannot hold a fused type.
    Py_ssize_t k, d, n_groups
    bint dot_form
    const void* shift           # (d,) subtracted from rows and centres (see _pack_panels)
    const void* shifted         # (k, d) centres minus shift, as lloyd_pass's panels hold them
    const void* base            # (k,) constant term of each centre's score
    const void* panels          # group g: (d, width[g]) at panel_start[g], its centres in
                                #     ascending order in lanes, then zero centres
    const void* slot_base       # (lanes of all groups,) base of each lane
    const int* slot_centre      # (lanes of all groups,) centre of each lane, -1 for padding
    const Py_ssize_t* slot_start   # (n_groups,) first lane of each group
    const Py_ssize_t* members   # (n_groups,) centres in each group
    const Py_ssize_t* panel_start  # (n_groups,) offset of each group's panel
    const Py_ssize_t* width     # (n_groups,) lanes of each group, a multiple of the vector
    const int* groups           # (k,) group of each centre
    const void* lloyd_panels    # lloyd_pass's panels and base (see _pack_panels)
    const void* lloyd_base
    Py_ssize_t n_panels


cdef struct _YinyangRows:
    # One chunk of rows and its thread's scratch (void: X's dtype).
    const void* X               # IN  (n, d)
    int* labels                 # IN/OUT (n,) best centre so far
    void* lower                 # IN/OUT (n, n_groups)
    Py_ssize_t start            # first row of the chunk (indexes best and sq_norm)
    void* best                  # (chunk rows,) score of each active row's best centre
    double* sq_norm             # (chunk rows,) its |x - shift|^2 (dot form)
    void* batch                 # (GROUP_ROWS, d) shifted rows being tightened
    void* searched              # (GROUP_ROWS, d) shifted rows of a queue being searched
    void* scores                # (GROUP_ROWS, largest width)
    Py_ssize_t* queue           # (n_groups, GROUP_ROWS) rows waiting for each group
    Py_ssize_t* queued          # (n_groups,) how many
    void* block_t               # (d, BLOCK_ROWS) a block of shifted rows in lanes
    void* panel_scores          # (FASTKM_PANEL, BLOCK_ROWS)
    void* group_top             # (2, n_groups, BLOCK_ROWS) two lowest scores per group
    Py_ssize_t* group_top_j     # (n_groups, BLOCK_ROWS) centre of the lowest


cdef enum:
    # Rows scored at once by the Yinyang kernels (independent accumulators).
    GROUP_ROWS = 8
    # A block is searched whole when more than 1 / YINYANG_BLOCK_SEARCH_SHARE of its rows'
    # group bounds fail (see _yinyang_chunk; MNIST, k = 100, 10 iterations on two threads,
    # three rounds: a half 70-75 ms, a quarter 62-69, an eighth 70-76).
    YINYANG_BLOCK_SEARCH_SHARE = 4

assert FASTKM_GROUP_ROWS == GROUP_ROWS


cdef inline void _shifted_rows(
        const floating* X, Py_ssize_t d,
        const Py_ssize_t* rows, Py_ssize_t n_rows,  # IN  1 to GROUP_ROWS rows
        const floating* shift,      # IN  (d,)
        floating* xs,               # OUT (GROUP_ROWS, d) the rows minus shift, the last
                                    #     one repeated to fill the block
) noexcept nogil:
    cdef Py_ssize_t r, f
    cdef const floating* x
    for r in range(GROUP_ROWS):
        x = X + rows[min(r, n_rows - 1)] * d
        for f in range(d):
            xs[r * d + f] = x[f] - shift[f]


cdef inline void _score_group(
        const _YinyangCentres* C, const _Slack* s, _YinyangRows* R,
        Py_ssize_t g,               # IN  the group to search
        const floating* xs,         # IN  (GROUP_ROWS, d) shifted rows
        const Py_ssize_t* rows,     # IN  (GROUP_ROWS,) row of each, -1 where none
) noexcept nogil:
    """Compare rows with every centre of group g: keep the better centre (ties to the lower
    index) and set the group's lower bound from the scores of the centres other than it."""
    cdef Py_ssize_t d = C.d, G = C.n_groups, width = C.width[g], first = C.slot_start[g]
    cdef Py_ssize_t members = C.members[g], r, m, row, local, top_slot
    cdef const floating* panel = <const floating*>C.panels + C.panel_start[g]
    cdef const floating* slot_base = <const floating*>C.slot_base + first
    cdef floating* scores = <floating*>R.scores
    cdef floating* best = <floating*>R.best
    cdef floating* lower = <floating*>R.lower
    cdef floating top, second, score, kind = 0
    cdef bint better
    cdef int j, top_j
    cdef _RowBounds rb
    if floating is float:
        if C.dot_form:
            fastkm_group_scores_f(xs, panel, slot_base, d, width, scores)
        else:
            fastkm_group_scores_direct_f(xs, panel, slot_base, d, width, scores)
    else:
        if C.dot_form:
            fastkm_group_scores_d(xs, panel, slot_base, d, width, scores)
        else:
            fastkm_group_scores_direct_d(xs, panel, slot_base, d, width, scores)
    for r in range(GROUP_ROWS):
        row = rows[r]
        if row < 0:
            continue
        local = row - R.start
        top = INFINITY
        second = INFINITY
        top_slot = 0
        for m in range(members):  # ascending centre index: ties keep the lowest
            score = scores[r * width + m]
            second = min(second, max(top, score))
            better = score < top
            top_slot = m if better else top_slot
            top = score if better else top
        top_j = C.slot_centre[first + top_slot]
        j = R.labels[row]
        rb = _row_bounds(s, R.sq_norm[local])
        if top < best[local] or (top == best[local] and top_j < j):
            # The centre left behind joins its group's "other centres".
            lower[row * G + C.groups[j]] = min(
                lower[row * G + C.groups[j]],
                _round_down(_dist_below(best[local], &rb), kind))
            R.labels[row] = top_j
            best[local] = top
            j = top_j
        lower[row * G + g] = _round_down(
            _dist_below(second if top_j == j else top, &rb), kind)


cdef inline void _search_queue(
        const _YinyangCentres* C, const _Slack* s, _YinyangRows* R, Py_ssize_t g,
        floating kind,              # IN  selects X's dtype
) noexcept nogil:
    """Search group g for the rows queued for it, and empty its queue."""
    cdef Py_ssize_t r, n_rows = R.queued[g]
    cdef Py_ssize_t rows[GROUP_ROWS]
    for r in range(GROUP_ROWS):
        rows[r] = R.queue[g * GROUP_ROWS + r] if r < n_rows else -1
    _shifted_rows(<const floating*>R.X, C.d, R.queue + g * GROUP_ROWS, n_rows,
                  <const floating*>C.shift, <floating*>R.searched)
    _score_group(C, s, R, g, <const floating*>R.searched, rows)
    R.queued[g] = 0


cdef inline void _tighten(
        const _YinyangCentres* C, const _Slack* s, _YinyangRows* R,
        const Py_ssize_t* rows, Py_ssize_t n_rows,  # IN  1 to GROUP_ROWS rows
        floating kind,              # IN  selects X's dtype
) noexcept nogil:
    """Score rows against their own centre, then search the groups whose lower bound does
    not prove all their scores higher: at once for the groups that half the rows need,
    through the groups' queues otherwise."""
    cdef Py_ssize_t d = C.d, G = C.n_groups, r, g, row, local, count
    cdef const floating* centres[GROUP_ROWS]
    cdef floating bases[GROUP_ROWS]
    cdef floating own[GROUP_ROWS]
    cdef double bound[GROUP_ROWS]
    cdef Py_ssize_t needing[GROUP_ROWS]
    cdef _RowBounds rb
    cdef floating* xs = <floating*>R.batch
    cdef floating* best = <floating*>R.best
    cdef const floating* lower = <const floating*>R.lower
    _shifted_rows(<const floating*>R.X, d, rows, n_rows, <const floating*>C.shift, xs)
    for r in range(GROUP_ROWS):
        row = rows[min(r, n_rows - 1)]
        centres[r] = <const floating*>C.shifted + R.labels[row] * d
        bases[r] = (<const floating*>C.base)[R.labels[row]]
    if floating is float:
        if C.dot_form:
            fastkm_row_scores_f(xs, centres, bases, d, own)
        else:
            fastkm_row_scores_direct_f(xs, centres, bases, d, own)
    else:
        if C.dot_form:
            fastkm_row_scores_d(xs, centres, bases, d, own)
        else:
            fastkm_row_scores_direct_d(xs, centres, bases, d, own)
    for r in range(n_rows):
        local = rows[r] - R.start
        best[local] = own[r]
        R.sq_norm[local] = _sq_norm(xs + r * d, d) if C.dot_form else 0
        rb = _row_bounds(s, R.sq_norm[local])
        bound[r] = _dist_above(own[r], &rb)
    for g in range(G):
        count = 0
        for r in range(GROUP_ROWS):
            needing[r] = -1
            if r < n_rows and not lower[rows[r] * G + g] > bound[r]:  # NaN: search
                needing[r] = rows[r]
                count += 1
        if 2 * count >= GROUP_ROWS:
            _score_group(C, s, R, g, xs, needing)
        elif count:
            for r in range(n_rows):
                if needing[r] >= 0:
                    R.queue[g * GROUP_ROWS + R.queued[g]] = needing[r]
                    R.queued[g] += 1
                    if R.queued[g] == GROUP_ROWS:
                        _search_queue(C, s, R, g, kind)


cdef extern from *:
    """
    /* Lower bounds of the groups for the BLOCK_ROWS rows of a block, from their two lowest
    scores per group (see _search_block): out[g, i] = bound(v) with v = second[g, i] in the
    row's own group, top[g, i] elsewhere, and bound(v) = sqrt(max(0, a v + b[i])) m - c[i]
    (see _RowBounds) rounded down to T. Without branches; out may be top. */
    #define FASTKM_DEFINE_GROUP_LOWER(NAME, T, ROUND)                                         \\
    static void NAME(const T* top, const T* second, const int* own_group, const double* b,     \\
                     const double* c, double a, double m, Py_ssize_t n_groups, T* out) {      \\
        for (Py_ssize_t g = 0; g < n_groups; g++)                                             \\
            for (int i = 0; i < FASTKM_BLOCK_ROWS; i++) {                                     \\
                double v = own_group[i] == g ? second[g * FASTKM_BLOCK_ROWS + i]              \\
                                             : top[g * FASTKM_BLOCK_ROWS + i];                \\
                double x = a * v + b[i];                                                      \\
                x = x > 0 ? x : 0; /* (NaN: 0, a bound of -c) */                              \\
                out[g * FASTKM_BLOCK_ROWS + i] = ROUND(__builtin_sqrt(x) * m - c[i]);          \\
            }                                                                                 \\
    }
    #define FASTKM_AS_DOUBLE(v) (v)
    FASTKM_DEFINE_GROUP_LOWER(fastkm_group_lower_f, float, fastkm_float_below)
    FASTKM_DEFINE_GROUP_LOWER(fastkm_group_lower_d, double, FASTKM_AS_DOUBLE)
    """
    void fastkm_group_lower_f(const float* top, const float* second, const int* own_group,
                              const double* b, const double* c, double a, double m,
                              Py_ssize_t n_groups, float* out) noexcept nogil
    void fastkm_group_lower_d(const double* top, const double* second, const int* own_group,
                              const double* b, const double* c, double a, double m,
                              Py_ssize_t n_groups, double* out) noexcept nogil


cdef Py_ssize_t _search_block(
        const _YinyangCentres* C, const _Slack* s, _YinyangRows* R,
        Py_ssize_t block_start,     # IN  first row of the block
        Py_ssize_t stop,            # IN  end of the chunk
        floating* upper,            # OUT (n,) upper bounds of the block's rows
) noexcept nogil:
    """A block of rows (those whose bounds were reset, upper = inf, or many of whose bounds
    fail): every centre is scored, panel by panel as in lloyd_pass, and every bound is set
    afresh from the scores. Returns how many labels changed."""
    cdef Py_ssize_t d = C.d, G = C.n_groups, k = C.k, p, q, j, g, i, f, row, nearest
    cdef Py_ssize_t n_real = min(<Py_ssize_t>BLOCK_ROWS, stop - block_start)
    cdef const floating* panels = <const floating*>C.lloyd_panels
    cdef const floating* base = <const floating*>C.lloyd_base
    cdef floating* block_t = <floating*>R.block_t
    cdef floating* scores = <floating*>R.panel_scores
    cdef floating* top = <floating*>R.group_top
    cdef floating* second = top + G * BLOCK_ROWS
    cdef floating* lower = <floating*>R.lower
    cdef Py_ssize_t* top_j = R.group_top_j
    cdef floating* t
    cdef floating* u
    cdef Py_ssize_t* tj
    cdef const floating* score
    cdef floating lowest, kind = 0
    cdef double sq_norm[BLOCK_ROWS]
    cdef double b_lo[BLOCK_ROWS]
    cdef double c_lo[BLOCK_ROWS]
    cdef int own_group[BLOCK_ROWS]
    cdef _RowBounds rb
    cdef Py_ssize_t changed = 0
    _transpose_block_shifted(<const floating*>R.X, d, block_start, stop,
                             <const floating*>C.shift, block_t)
    for g in range(G):
        for i in range(BLOCK_ROWS):
            top[g * BLOCK_ROWS + i] = INFINITY
            second[g * BLOCK_ROWS + i] = INFINITY
            top_j[g * BLOCK_ROWS + i] = C.slot_centre[C.slot_start[g]]  # its lowest index
    for p in range(C.n_panels):
        if floating is float:
            if C.dot_form:
                fastkm_panel_scores_f(block_t, panels + p * d * FASTKM_PANEL,
                                      base + p * FASTKM_PANEL, d, scores)
            else:
                fastkm_panel_scores_direct_f(block_t, panels + p * d * FASTKM_PANEL,
                                             base + p * FASTKM_PANEL, d, scores)
        else:
            if C.dot_form:
                fastkm_panel_scores_d(block_t, panels + p * d * FASTKM_PANEL,
                                      base + p * FASTKM_PANEL, d, scores)
            else:
                fastkm_panel_scores_direct_d(block_t, panels + p * d * FASTKM_PANEL,
                                             base + p * FASTKM_PANEL, d, scores)
        for q in range(min(<Py_ssize_t>FASTKM_PANEL, k - p * FASTKM_PANEL)):
            j = p * FASTKM_PANEL + q  # in index order: ties keep the lowest
            g = C.groups[j]
            t = top + g * BLOCK_ROWS
            u = second + g * BLOCK_ROWS
            tj = top_j + g * BLOCK_ROWS
            score = scores + q * BLOCK_ROWS
            for i in range(BLOCK_ROWS):  # branchless, to vectorize
                u[i] = min(u[i], max(t[i], score[i]))
                tj[i] = j if score[i] < t[i] else tj[i]
                t[i] = score[i] if score[i] < t[i] else t[i]
    for i in range(BLOCK_ROWS):
        sq_norm[i] = 0
    if C.dot_form:
        for f in range(d):
            for i in range(BLOCK_ROWS):
                sq_norm[i] += <double>block_t[f * BLOCK_ROWS + i] * block_t[f * BLOCK_ROWS + i]
    for i in range(BLOCK_ROWS):
        own_group[i] = -1
        b_lo[i] = 0
        c_lo[i] = 0
    for i in range(n_real):
        row = block_start + i
        lowest = INFINITY
        nearest = k
        for g in range(G):  # the lowest score, ties to the lowest index
            if top[g * BLOCK_ROWS + i] < lowest or (top[g * BLOCK_ROWS + i] == lowest
                                                   and top_j[g * BLOCK_ROWS + i] < nearest):
                lowest = top[g * BLOCK_ROWS + i]
                nearest = top_j[g * BLOCK_ROWS + i]
        changed += R.labels[row] != nearest
        R.labels[row] = <int>nearest
        own_group[i] = C.groups[nearest]
        rb = _row_bounds(s, sq_norm[i])
        upper[row] = _round_up(_dist_above(lowest, &rb), kind)
        b_lo[i] = rb.b_lo
        c_lo[i] = rb.c_lo
    # a_lo and m_lo are the same for every row.
    if floating is float:
        fastkm_group_lower_f(top, second, own_group, b_lo, c_lo, rb.a_lo, rb.m_lo, G, top)
    else:
        fastkm_group_lower_d(top, second, own_group, b_lo, c_lo, rb.a_lo, rb.m_lo, G, top)
    for i in range(n_real):
        for g in range(G):
            lower[(block_start + i) * G + g] = top[g * BLOCK_ROWS + i]
    return changed


cdef Py_ssize_t _yinyang_chunk(
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,)
        const _YinyangCentres* C,            # IN  the centres, see yinyang_pass
        const _Slack* s,                     # IN  rounding allowances
        const floating* moved,               # IN  (k,) how far each centre moved
        const floating* group_moved,         # IN  (n_groups,) the largest move in each group
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        Py_ssize_t ways,                     # IN  copies of the sums, a power of two
        floating* fscratch,                  # scratch: GROUP_ROWS * (2 d + largest width)
                                             #     + chunk rows + BLOCK_ROWS * (d
                                             #     + FASTKM_PANEL + 2 n_groups) values
        double* dscratch,                    # scratch: chunk rows values
        Py_ssize_t* iscratch,                # scratch: 2 chunk rows + GROUP_ROWS + n_groups
                                             #     * (GROUP_ROWS + 1 + BLOCK_ROWS) values
        Py_ssize_t max_width,                # IN  the largest group width
        int* labels,                         # IN/OUT (n,) nearest centre
        floating* upper,                     # IN/OUT (n,) upper bound of the distance to it
        floating* lower,                     # IN/OUT (n, n_groups) lower bounds per group
        int* old_labels,                     # scratch (stop - start,) for the rows' centres
                                             #     before the pass; NULL: acc gets all the
                                             #     rows' sums, not their changes
        double* acc,                         # OUT (ways, k, d + 1) as in _lloyd_chunk_d, or
                                             #     as in _accumulate_changes
        unsigned char* touched,              # IN/OUT (k,) with old_labels: see
                                             #     _accumulate_changes
) noexcept nogil:
    """Returns how many labels changed."""
    cdef Py_ssize_t d = C.d, k = C.k, G = C.n_groups, changed = 0
    cdef Py_ssize_t* active = iscratch
    cdef Py_ssize_t* waiting = active + (stop - start)
    cdef Py_ssize_t row, g, i, n_active = 0, n_waiting = 0
    cdef bint fresh = False
    cdef _RowBounds rb
    # Bounds move by the shifts rounded outwards, so that they stay bounds.
    cdef floating up = 1 + 4 * s.eps, down = 1 - 4 * s.eps, u, l, threshold, kind = 0
    cdef Py_ssize_t failing, block_start, block_stop, block_failing
    cdef Py_ssize_t row_failing[BLOCK_ROWS]
    cdef floating* lo
    cdef floating* best = fscratch + GROUP_ROWS * (2 * d + max_width)
    cdef _YinyangRows R
    R.X, R.labels, R.lower, R.start = X, labels, lower, start
    R.best, R.sq_norm = best, dscratch
    R.batch, R.searched = fscratch, fscratch + GROUP_ROWS * d
    R.scores = fscratch + 2 * GROUP_ROWS * d
    R.queue = waiting + GROUP_ROWS
    R.queued = R.queue + G * GROUP_ROWS
    R.group_top_j = R.queued + G
    cdef Py_ssize_t* original = R.group_top_j + G * BLOCK_ROWS  # labels of the active rows
    R.block_t = best + (stop - start)
    R.panel_scores = <floating*>R.block_t + d * BLOCK_ROWS
    R.group_top = <floating*>R.panel_scores + FASTKM_PANEL * BLOCK_ROWS
    for g in range(G):
        R.queued[g] = 0
    if old_labels != NULL:
        memcpy(old_labels, labels + start, (stop - start) * sizeof(int))
    for block_start from start <= block_start < stop by BLOCK_ROWS:
        block_stop = min(stop, block_start + BLOCK_ROWS)
        # Most rows of a block usually fail a bound, each read from memory when its batch
        # is searched: the block after next is fetched now (blobs 200k x 128, k = 256, to
        # convergence: 2.62 to 2.45 s on one thread, 1.36 to 1.32 s on two).
        for i from (block_start + 2 * BLOCK_ROWS) * d <= i \
                < min(stop, block_start + 3 * BLOCK_ROWS) * d by 64 // sizeof(floating):
            fastkm_prefetch(X + i)
        fresh = True
        for i in range(block_start, block_stop):
            fresh = fresh and upper[i] == INFINITY
        if fresh:
            changed += _search_block(C, s, &R, block_start, stop, upper)
            continue
        # The block's bounds first, then the rows whose bounds fail.
        block_failing = 0
        for row in range(block_start, block_stop):
            u = (upper[row] + moved[labels[row]]) * up
            upper[row] = u
            threshold = _round_up(_skip_threshold(u, s), kind)
            lo = lower + row * G
            failing = 0
            for g in range(G):  # counted, not branched on, so that it vectorizes
                l = (lo[g] - group_moved[g]) * down
                lo[g] = l
                failing += not (l > threshold)  # (NaN: fails)
            row_failing[row - block_start] = failing
            block_failing += failing
        # Many of the block's group bounds failing (the passes after the centres' first big
        # moves): every centre scored in lloyd_pass's panels, and every bound set afresh,
        # costs less than the failing groups' searches (MNIST, k = 100, 10 iterations: 79
        # to 61 ms on two threads; blobs 200k x 128, k = 256: the same).
        if block_failing * YINYANG_BLOCK_SEARCH_SHARE > G * (block_stop - block_start):
            changed += _search_block(C, s, &R, block_start, stop, upper)
            continue
        for row in range(block_start, block_stop):
            if row_failing[row - block_start] == 0:
                continue
            active[n_active] = row
            original[n_active] = labels[row]
            n_active += 1
            waiting[n_waiting] = row
            n_waiting += 1
            if n_waiting == GROUP_ROWS:
                _tighten(C, s, &R, waiting, n_waiting, kind)
                n_waiting = 0
    if n_waiting:
        _tighten(C, s, &R, waiting, n_waiting, kind)
    for g in range(G):
        if R.queued[g]:
            _search_queue(C, s, &R, g, kind)
    for i in range(n_active):
        row = active[i]
        rb = _row_bounds(s, dscratch[row - start])
        upper[row] = _round_up(_dist_above(best[row - start], &rb), kind)
        changed += labels[row] != original[i]
    if old_labels == NULL:
        _accumulate_rows(X, sample_weight, labels, k, d, start, stop, ways, acc)
    else:
        _accumulate_changes(X, sample_weight, labels, old_labels, k, d, start, stop, acc,
                            touched)
    return changed


def yinyang_pass(
        const floating[:, ::1] X,            # IN  (n, d) rows to assign
        const floating[::1] sample_weight,   # IN  (n,) non-negative weights
        const floating[:, ::1] centers,      # IN  (k, d) current centres
        const floating[::1] moved,           # IN  (k,) upper bound of the distance each centre
                                             #     moved since the bounds were last updated
        int[::1] labels,                     # IN/OUT (n,) nearest centre of each row
        floating[::1] upper,                 # IN/OUT (n,) upper bound of that distance
        floating[:, ::1] lower,              # IN/OUT (n, n_groups) lower bound of the distance
                                             #     to the other centres of each group
        const int[::1] groups,               # IN  (k,) group of each centre, 0 to
                                             #     n_groups - 1, no group empty
        double[:, ::1] sums,                 # OUT (k, d) weighted sum of the rows of each
                                             #     cluster (IN/OUT with update_sums)
        double[::1] weight_sums,             # OUT (k,) summed weight of each cluster (IN/OUT
                                             #     with update_sums)
        int n_threads=1,
        bint update_sums=False,              # IN  sums and weight_sums are those of the labels
                                             #     passed in: add only what the pass changes
):
    """One Lloyd pass with simplified Yinyang bounds: the same labels, sums and weights.

    To start (or restart) the bounds, pass ``upper = inf``, ``lower = 0``, any valid labels
    and ``moved = 0``. The labels are those lloyd_pass gives on ``centers``, ties included,
    and the sums and weights are bit-identical to its own. Returns how many labels changed.

    ``update_sums``: as in hamerly_pass.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t G = lower.shape[1]
    cdef Py_ssize_t ways = _accumulator_ways(d)
    cdef Py_ssize_t n_chunks, chunk_rows, c, max_width
    # lloyd_pass's form: the dot-product form where it uses panels.
    cdef bint dot_form = d > MAX_UNROLLED_FEATURES
    _check_shapes(X, sample_weight, centers)
    if labels.shape[0] != n or upper.shape[0] != n or lower.shape[0] != n \
            or groups.shape[0] != k or moved.shape[0] != k or sums.shape[0] != k \
            or sums.shape[1] != d or weight_sums.shape[0] != k:
        raise ValueError("yinyang_pass: array shapes do not match X and centers")
    group_of = np.asarray(groups)
    if group_of.min() < 0 or group_of.max() >= G \
            or (np.bincount(group_of, minlength=G) == 0).any():
        raise ValueError("yinyang_pass: groups must number the centres' groups 0 to "
                         "lower.shape[1] - 1, none empty")
    dtype = np.float32 if floating is float else np.float64
    lanes = FASTKM_GROUP_LANES_F if floating is float else FASTKM_GROUP_LANES_D

    # The shifted centres and constant terms of lloyd_pass, taken from its own panels.
    panels_arr, panels_base_arr, shift_arr = _pack_panels(centers, dot_form)
    shifted_arr = np.ascontiguousarray(panels_arr.transpose(0, 2, 1).reshape(-1, d)[:k])
    base_arr = np.ascontiguousarray(panels_base_arr[:k])
    # Each group as a (d, width) panel: its centres in ascending order in lanes, padding
    # lanes of zero centres (never read back).
    order = np.argsort(group_of, kind="stable")
    members_arr = np.bincount(group_of, minlength=G).astype(np.intp)
    width_arr = (members_arr + lanes - 1) // lanes * lanes
    slot_start_arr = (np.cumsum(width_arr) - width_arr).astype(np.intp)
    panel_start_arr = (slot_start_arr * d).astype(np.intp)
    sorted_groups = group_of[order]
    rank = np.arange(k) - (np.cumsum(members_arr) - members_arr)[sorted_groups]
    slots = slot_start_arr[sorted_groups] + rank
    n_slots = int(width_arr.sum())
    slot_centre_arr = np.full(n_slots, -1, dtype=np.intc)
    slot_centre_arr[slots] = order
    slot_base_arr = np.full(n_slots, np.inf, dtype=dtype)
    slot_base_arr[slots] = base_arr[order]
    group_panels = np.zeros(n_slots * d, dtype=dtype)
    group_moved_arr = np.zeros(G, dtype=dtype)
    np.maximum.at(group_moved_arr, group_of, np.asarray(moved))
    max_width = int(width_arr.max())

    cdef floating[::1] shift_v = shift_arr, base_v = base_arr, slot_base_v = slot_base_arr
    cdef floating[:, ::1] shifted_v = shifted_arr
    cdef floating[::1] panels_v = group_panels, group_moved_v = group_moved_arr
    cdef int[::1] slot_centre_v = slot_centre_arr
    cdef Py_ssize_t[::1] slot_start_v = slot_start_arr, members_v = members_arr
    cdef Py_ssize_t[::1] panel_start_v = panel_start_arr, width_v = width_arr
    lane_arr = np.empty(k, dtype=np.intp)
    lane_arr[order] = rank
    cdef Py_ssize_t[::1] lane_v = lane_arr
    cdef Py_ssize_t j, f, g
    with nogil:  # each centre into its lane of its group's panel
        for j in range(k):
            g = groups[j]
            for f in range(d):
                panels_v[panel_start_v[g] + f * width_v[g] + lane_v[j]] = shifted_v[j, f]
    cdef floating[:, :, ::1] lloyd_panels_v = panels_arr
    cdef floating[::1] lloyd_base_v = np.ascontiguousarray(panels_base_arr)
    cdef _YinyangCentres C
    C.k, C.d, C.n_groups, C.dot_form = k, d, G, dot_form
    C.shift, C.shifted, C.base = &shift_v[0], &shifted_v[0, 0], &base_v[0]
    C.panels, C.slot_base, C.slot_centre = &panels_v[0], &slot_base_v[0], &slot_centre_v[0]
    C.slot_start, C.members = &slot_start_v[0], &members_v[0]
    C.panel_start, C.width, C.groups = &panel_start_v[0], &width_v[0], &groups[0]
    C.lloyd_panels, C.lloyd_base = &lloyd_panels_v[0, 0, 0], &lloyd_base_v[0]
    C.n_panels = lloyd_panels_v.shape[0]

    cdef _Slack s = _rounding_slack(dot_form, d, float(base_arr.max()), floating is float)

    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n * d * BOUNDED_WORK_PER_ROW)
    cdef double[:, ::1] chunk_acc
    cdef unsigned char[:, ::1] touched
    cdef int[:, ::1] old_labels
    chunk_acc, touched, old_labels = _sums_buffers(n_chunks, chunk_rows, n_threads, ways, k,
                                                   d, update_sums)
    cdef floating[:, ::1] fscratch = np.empty(
        (n_threads, GROUP_ROWS * (2 * d + max_width) + chunk_rows
         + BLOCK_ROWS * (d + FASTKM_PANEL + 2 * G)), dtype=dtype)
    cdef double[:, ::1] dscratch = np.empty((n_threads, max(chunk_rows, 1)))
    cdef Py_ssize_t[:, ::1] iscratch = np.empty(
        (n_threads, 2 * chunk_rows + GROUP_ROWS + G * (GROUP_ROWS + 1 + BLOCK_ROWS)),
        dtype=np.intp)
    cdef Py_ssize_t[::1] chunk_changed = np.zeros(max(n_chunks, 1), dtype=np.intp)

    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
        chunk_changed[c] = _yinyang_chunk(
            &X[0, 0], &sample_weight[0], &C, &s, &moved[0], &group_moved_v[0],
            c * chunk_rows, min(n, (c + 1) * chunk_rows), ways, &fscratch[threadid(), 0],
            &dscratch[threadid(), 0], &iscratch[threadid(), 0], max_width, &labels[0],
            &upper[0], &lower[0, 0], &old_labels[threadid(), 0] if update_sums else NULL,
            &chunk_acc[c, 0], &touched[c, 0] if update_sums else NULL)

    if update_sums:
        _merge_chunk_changes(chunk_acc, touched, n_chunks, sums, weight_sums)
    else:
        _merge_chunk_sums(chunk_acc, n_chunks, ways, sums, weight_sums)
    return int(np.sum(chunk_changed))


# ---------------------------------------------------------------------------------------------
# Greedy k-means++ initialization

cdef extern from *:
    """
    /* fastkm_row_sq_distances_{f,d}(x, cands, n_cands, d, out): out[l] = |x - c_l|^2 for one
    row x and the n_cands rows c_l = cands[l] (d values each), features in vector lanes: from
    many features on, k-means++'s passes read each row where it lies instead of transposing
    blocks of rows (an element at a time, which took most of their time on MNIST), and a
    block of 32 such rows no longer overflows the first-level cache. Feature f goes to the
    partial sum of lane f % FASTKM_SQ_LANES(T) (a 64-byte vector, whatever the ISA: gcc
    splits it where registers are narrower), the features after the last full vector to a
    sum of their own, in order; the lanes are then added pairwise, halves first, and the
    leftover sum last. So a row's distances do not depend on the thread count. Four
    candidates at a time share each load of the row, and their lanes are added in one tree
    of vector shuffles (the same additions as lane by lane, which took more time than the
    distances themselves at 128 features). */
    #define FASTKM_SQ_LANES(T) (64 / (int)sizeof(T))
    #if FASTKM_VECTOR_EXTENSIONS
    typedef float fastkm_sq_vec_float __attribute__((vector_size(64)));
    typedef double fastkm_sq_vec_double __attribute__((vector_size(64)));
    #if FASTKM_SHUFFLE_TRANSPOSE  /* (__builtin_shufflevector: gcc 12 or clang) */
    #define FASTKM_SQ_SHUFFLE __builtin_shufflevector
    /* The four lane trees, side by side: out[i] = the tree of a_i. */
    static inline void fastkm_sq_tree4_float(fastkm_sq_vec_float a0, fastkm_sq_vec_float a1,
                                             fastkm_sq_vec_float a2, fastkm_sq_vec_float a3,
                                             float* out) {
        fastkm_sq_vec_float p01 =
            FASTKM_SQ_SHUFFLE(a0, a1, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
            + FASTKM_SQ_SHUFFLE(a0, a1, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30,
                             31);
        fastkm_sq_vec_float p23 =
            FASTKM_SQ_SHUFFLE(a2, a3, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
            + FASTKM_SQ_SHUFFLE(a2, a3, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30,
                             31);
        fastkm_sq_vec_float q =
            FASTKM_SQ_SHUFFLE(p01, p23, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27)
            + FASTKM_SQ_SHUFFLE(p01, p23, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30,
                             31);
        fastkm_sq_vec_float r =
            FASTKM_SQ_SHUFFLE(q, q, 0, 1, 4, 5, 8, 9, 12, 13, 0, 1, 4, 5, 8, 9, 12, 13)
            + FASTKM_SQ_SHUFFLE(q, q, 2, 3, 6, 7, 10, 11, 14, 15, 2, 3, 6, 7, 10, 11, 14, 15);
        fastkm_sq_vec_float t =
            FASTKM_SQ_SHUFFLE(r, r, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6)
            + FASTKM_SQ_SHUFFLE(r, r, 1, 3, 5, 7, 1, 3, 5, 7, 1, 3, 5, 7, 1, 3, 5, 7);
        for (int i = 0; i < 4; i++) out[i] = t[i];
    }
    static inline void fastkm_sq_tree4_double(fastkm_sq_vec_double a0, fastkm_sq_vec_double a1,
                                              fastkm_sq_vec_double a2, fastkm_sq_vec_double a3,
                                              double* out) {
        fastkm_sq_vec_double p01 = FASTKM_SQ_SHUFFLE(a0, a1, 0, 1, 2, 3, 8, 9, 10, 11)
                                   + FASTKM_SQ_SHUFFLE(a0, a1, 4, 5, 6, 7, 12, 13, 14, 15);
        fastkm_sq_vec_double p23 = FASTKM_SQ_SHUFFLE(a2, a3, 0, 1, 2, 3, 8, 9, 10, 11)
                                   + FASTKM_SQ_SHUFFLE(a2, a3, 4, 5, 6, 7, 12, 13, 14, 15);
        fastkm_sq_vec_double q = FASTKM_SQ_SHUFFLE(p01, p23, 0, 1, 4, 5, 8, 9, 12, 13)
                                 + FASTKM_SQ_SHUFFLE(p01, p23, 2, 3, 6, 7, 10, 11, 14, 15);
        fastkm_sq_vec_double t = FASTKM_SQ_SHUFFLE(q, q, 0, 2, 4, 6, 0, 2, 4, 6)
                                 + FASTKM_SQ_SHUFFLE(q, q, 1, 3, 5, 7, 1, 3, 5, 7);
        for (int i = 0; i < 4; i++) out[i] = t[i];
    }
    #else
    /* (Without __builtin_shufflevector: the same additions, lane by lane.) */
    #define FASTKM_DEFINE_SQ_TREE4(T)                                                         \\
    static inline void fastkm_sq_tree4_##T(fastkm_sq_vec_##T a0, fastkm_sq_vec_##T a1,         \\
                                           fastkm_sq_vec_##T a2, fastkm_sq_vec_##T a3,         \\
                                           T* out) {                                          \\
        fastkm_sq_vec_##T a[4] = {a0, a1, a2, a3};                                            \\
        for (int k = 0; k < 4; k++) {                                                         \\
            T lanes[FASTKM_SQ_LANES(T)];                                                      \\
            __builtin_memcpy(lanes, &a[k], sizeof(lanes));                                    \\
            for (int half = FASTKM_SQ_LANES(T) / 2; half > 0; half /= 2)                      \\
                for (int i = 0; i < half; i++) lanes[i] += lanes[i + half];                   \\
            out[k] = lanes[0];                                                                \\
        }                                                                                     \\
    }
    FASTKM_DEFINE_SQ_TREE4(float)
    FASTKM_DEFINE_SQ_TREE4(double)
    #endif
    #define FASTKM_SQ_ACCUMULATE(T, ACC, XV, C)                                               \\
        do {                                                                                  \\
            fastkm_sq_vec_##T cv_;                                                            \\
            __builtin_memcpy(&cv_, (C), sizeof(cv_));                                         \\
            cv_ = (XV) - cv_;                                                                 \\
            (ACC) += cv_ * cv_;                                                               \\
        } while (0)
    /* The sum of the features after the last full vector, in order. */
    #define FASTKM_SQ_REST(T, X, C, FULL, D)                                                  \\
        ({                                                                                    \\
            T rest_ = 0;                                                                      \\
            for (Py_ssize_t f_ = (FULL); f_ < (D); f_++) {                                    \\
                T t_ = (X)[f_] - (C)[f_];                                                     \\
                rest_ += t_ * t_;                                                             \\
            }                                                                                 \\
            rest_;                                                                            \\
        })
    #define FASTKM_DEFINE_ROW_SQ_DISTANCES(NAME, T)                                           \\
    static void NAME(const T* x, const T* const* cands, Py_ssize_t n_cands, Py_ssize_t d,     \\
                     T* out) {                                                                \\
        enum { W = FASTKM_SQ_LANES(T) };                                                      \\
        Py_ssize_t full = d - d % W, l = 0;                                                   \\
        T tree[4];                                                                            \\
        for (; l < n_cands; l += 4) {                                                         \\
            /* (Past the last candidate, the group repeats it: one tree for all.) */         \\
            const T* c0 = cands[l];                                                           \\
            const T* c1 = cands[l + 1 < n_cands ? l + 1 : n_cands - 1];                       \\
            const T* c2 = cands[l + 2 < n_cands ? l + 2 : n_cands - 1];                       \\
            const T* c3 = cands[l + 3 < n_cands ? l + 3 : n_cands - 1];                       \\
            fastkm_sq_vec_##T a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, xv;                     \\
            if (l + 1 < n_cands) {                                                            \\
                for (Py_ssize_t f = 0; f < full; f += W) {                                    \\
                    __builtin_memcpy(&xv, x + f, sizeof(xv));                                 \\
                    FASTKM_SQ_ACCUMULATE(T, a0, xv, c0 + f);                                  \\
                    FASTKM_SQ_ACCUMULATE(T, a1, xv, c1 + f);                                  \\
                    FASTKM_SQ_ACCUMULATE(T, a2, xv, c2 + f);                                  \\
                    FASTKM_SQ_ACCUMULATE(T, a3, xv, c3 + f);                                  \\
                }                                                                             \\
            } else {  /* one candidate left: alone */                                        \\
                for (Py_ssize_t f = 0; f < full; f += W) {                                    \\
                    __builtin_memcpy(&xv, x + f, sizeof(xv));                                 \\
                    FASTKM_SQ_ACCUMULATE(T, a0, xv, c0 + f);                                  \\
                }                                                                             \\
            }                                                                                 \\
            fastkm_sq_tree4_##T(a0, a1, a2, a3, tree);                                        \\
            out[l] = tree[0] + FASTKM_SQ_REST(T, x, c0, full, d);                             \\
            if (l + 1 < n_cands) out[l + 1] = tree[1] + FASTKM_SQ_REST(T, x, c1, full, d);    \\
            if (l + 2 < n_cands) out[l + 2] = tree[2] + FASTKM_SQ_REST(T, x, c2, full, d);    \\
            if (l + 3 < n_cands) out[l + 3] = tree[3] + FASTKM_SQ_REST(T, x, c3, full, d);    \\
        }                                                                                     \\
    }
    #else
    /* Portable fallback: the same partial sums and additions, in arrays. */
    #define FASTKM_DEFINE_ROW_SQ_DISTANCES(NAME, T)                                           \\
    static void NAME(const T* x, const T* const* cands, Py_ssize_t n_cands, Py_ssize_t d,     \\
                     T* out) {                                                                \\
        enum { W = FASTKM_SQ_LANES(T) };                                                      \\
        Py_ssize_t full = d - d % W;                                                          \\
        for (Py_ssize_t l = 0; l < n_cands; l++) {                                            \\
            const T* c = cands[l];                                                            \\
            T lanes[W], rest = 0;                                                             \\
            for (int i = 0; i < W; i++) lanes[i] = 0;                                         \\
            for (Py_ssize_t f = 0; f < full; f += W)                                          \\
                for (int i = 0; i < W; i++) {                                                 \\
                    T t = x[f + i] - c[f + i];                                                \\
                    lanes[i] += t * t;                                                        \\
                }                                                                             \\
            for (int half = W / 2; half > 0; half /= 2)                                       \\
                for (int i = 0; i < half; i++) lanes[i] += lanes[i + half];                   \\
            for (Py_ssize_t f = full; f < d; f++) {                                           \\
                T t = x[f] - c[f];                                                            \\
                rest += t * t;                                                                \\
            }                                                                                 \\
            out[l] = lanes[0] + rest;                                                         \\
        }                                                                                     \\
    }
    #endif
    FASTKM_DEFINE_ROW_SQ_DISTANCES(fastkm_row_sq_distances_f, float)
    FASTKM_DEFINE_ROW_SQ_DISTANCES(fastkm_row_sq_distances_d, double)
    """
    void fastkm_row_sq_distances_f(const float* x, const float* const* cands,
                                   Py_ssize_t n_cands, Py_ssize_t d, float* out) noexcept nogil
    void fastkm_row_sq_distances_d(const double* x, const double* const* cands,
                                   Py_ssize_t n_cands, Py_ssize_t d, double* out) noexcept nogil


cdef inline void _row_sq_distances(
        const floating* x,                   # IN  (d,) one row
        const floating* const* cands,        # IN  (n_cands,) rows of d values
        Py_ssize_t n_cands, Py_ssize_t d,
        floating* out,                       # OUT (n_cands,) squared distances
) noexcept nogil:
    if floating is float:
        fastkm_row_sq_distances_f(x, cands, n_cands, d, out)
    else:
        fastkm_row_sq_distances_d(x, cands, n_cands, d, out)


cdef void _row_sq_distances_all(
        const floating* x,          # IN  (d,) one row
        const floating* centers,    # IN  (k, d)
        Py_ssize_t k, Py_ssize_t d,
        floating* out,              # OUT (k,) its squared distance to each centre
) noexcept nogil:
    """fastkm_row_sq_distances over all k centres, MAX_CANDIDATES at a time."""
    cdef Py_ssize_t j0, j
    cdef const floating* cands[MAX_CANDIDATES]
    for j0 from 0 <= j0 < k by MAX_CANDIDATES:
        for j in range(j0, min(k, j0 + MAX_CANDIDATES)):
            cands[j - j0] = centers + j * d
        _row_sq_distances(x, cands, min(k, j0 + MAX_CANDIDATES) - j0, d, out + j0)


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


cdef void _candidates_rows_chunk(
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,)
        const floating* candidates,          # IN  (L, d), L <= MAX_CANDIDATES
        Py_ssize_t n_candidates, Py_ssize_t d,
        const double* closest_sq,            # IN  (n,)
        const int* nearest,                  # IN  (n,) the chosen centre at closest_sq from
                                             #     each row, or NULL: no pruning
        const floating* gaps,                # IN  (chosen, L) squared distances from the
                                             #     chosen centres to the candidates
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        double* potentials,                  # OUT (L,) zeroed, potential of each candidate
) noexcept nogil:
    """_candidates_chunk_d for many features, a row at a time where it lies. A candidate at
    least twice as far from a row's nearest centre as the row itself (its squared gap at
    least 4 closest_sq) is at least as far from the row as that centre (the triangle
    inequality), so it leaves the row's term as it is: its distance is not computed, and a
    row that no candidate comes near is not read (Raff, "Exact acceleration of k-means++
    and k-means||", 2021)."""
    cdef Py_ssize_t row, l, m, n_near
    cdef double closest, limit
    cdef const floating* gap_row
    cdef const floating* near_cands[MAX_CANDIDATES]
    cdef Py_ssize_t near[MAX_CANDIDATES]
    cdef floating dist[MAX_CANDIDATES]
    cdef double term[MAX_CANDIDATES]
    for l in range(n_candidates):
        near[l] = l
    for row in range(start, stop):
        closest = closest_sq[row]
        n_near = n_candidates
        if nearest != NULL:
            # (Listed without a branch: which candidates are near is unpredictable.)
            gap_row = gaps + nearest[row] * n_candidates
            limit = 4 * closest
            n_near = 0
            for l in range(n_candidates):
                near[n_near] = l
                n_near += gap_row[l] < limit
        for l in range(n_candidates):
            term[l] = closest
        if n_near:
            for m in range(n_near):
                near_cands[m] = candidates + near[m] * d
            _row_sq_distances(X + row * d, near_cands, n_near, d, dist)
            for m in range(n_near):
                term[near[m]] = min(<double>dist[m], closest)
        # (A row's distances take many cycles: one sum per candidate chains no addition
        # that waits.)
        for l in range(n_candidates):
            potentials[l] += sample_weight[row] * term[l]


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
        const double[::1] closest_sq,        # IN  (n,) squared distance to the nearest
                                             #     chosen centre
        double[::1] potentials,              # OUT (L,) potential if each candidate were added
        int n_threads=1,
        const int[::1] nearest=None,         # IN  (n,) index of that centre among the chosen,
                                             #     each below gaps.shape[0] (not checked: a
                                             #     read per row); from ROW_MAJOR_MIN_FEATURES
                                             #     features
        const floating[:, ::1] gaps=None,    # IN  (chosen, L) squared distances from the
                                             #     chosen centres to the candidates
):
    """For each candidate, sum(w * min(closest_sq, |x - candidate|**2)) over the rows.

    With ``nearest`` and ``gaps``, a candidate is not compared with a row it cannot come
    nearer to than the row's centre (see _candidates_rows_chunk): the same sums, to
    rounding (a pruned term is closest_sq itself where a computed distance might have
    rounded a hair below it)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_candidates = candidates.shape[0]
    cdef Py_ssize_t n_chunks, chunk_rows, c, l
    cdef const int* nearest_p = NULL
    cdef const floating* gaps_p = NULL
    _check_shapes(X, sample_weight, candidates)
    if closest_sq.shape[0] != n or potentials.shape[0] != n_candidates:
        raise ValueError("kmeanspp_candidate_potentials: array sizes do not match X")
    if n_candidates > MAX_CANDIDATES:
        raise ValueError(f"at most {MAX_CANDIDATES} candidates per call")
    if nearest is not None:
        if d < ROW_MAJOR_MIN_FEATURES or gaps is None or nearest.shape[0] != n \
                or gaps.shape[1] != n_candidates or gaps.shape[0] == 0:
            raise ValueError("kmeanspp_candidate_potentials: nearest and gaps need "
                             f"{ROW_MAJOR_MIN_FEATURES} features or more, one entry per "
                             "row and a gap per chosen centre and candidate")
        nearest_p, gaps_p = &nearest[0], &gaps[0, 0]
    _row_chunks(n, &n_chunks, &chunk_rows)
    # Per row and candidate: a distance, a minimum and a weighted sum.
    n_threads = _threads_for(n_chunks, n_threads, n * n_candidates * (d + 8))
    cdef double[:, ::1] chunk_pot = _chunk_buffers(n_chunks, n_candidates)
    cdef floating[:, ::1] scratch = _scratch(X, n_threads)
    potentials[:] = 0

    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
        if d >= ROW_MAJOR_MIN_FEATURES:
            _candidates_rows_chunk(&X[0, 0], &sample_weight[0], &candidates[0, 0],
                                   n_candidates, d, &closest_sq[0], nearest_p, gaps_p,
                                   c * chunk_rows, min(n, (c + 1) * chunk_rows),
                                   &chunk_pot[c, 0])
        else:
            _candidates_chunk(&X[0, 0], &sample_weight[0], &candidates[0, 0], n_candidates,
                              d, &closest_sq[0], c * chunk_rows,
                              min(n, (c + 1) * chunk_rows), &scratch[threadid(), 0],
                              &chunk_pot[c, 0])

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


cdef double _update_closest_rows_chunk(
        const floating* X,                   # IN  (n, d)
        const floating* sample_weight,       # IN  (n,)
        const floating* center,              # IN  (d,)
        Py_ssize_t d,
        const floating* gaps,                # IN  (chosen,) squared distances from the
                                             #     chosen centres to this one (with nearest)
        int center_index,                    # IN  this centre's index among the chosen
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        double* closest_sq,                  # IN/OUT (n,) rows [start, stop) updated
        int* nearest,                        # IN/OUT (n,) as in _candidates_rows_chunk, or
                                             #     NULL: no pruning
) noexcept nogil:
    """_update_closest_chunk_d for many features, pruned as _candidates_rows_chunk."""
    cdef Py_ssize_t row
    cdef double total = 0
    cdef floating dist
    cdef const floating* cands[1]
    cands[0] = center
    for row in range(start, stop):
        if nearest == NULL or gaps[nearest[row]] < 4 * closest_sq[row]:
            _row_sq_distances(X + row * d, cands, 1, d, &dist)
            if dist < closest_sq[row]:
                closest_sq[row] = dist
                if nearest != NULL:
                    nearest[row] = center_index
        total += sample_weight[row] * closest_sq[row]
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
        int[::1] nearest=None,               # IN/OUT (n,) as in kmeanspp_candidate_potentials
                                             #     (each below center_index): set to
                                             #     center_index where center is nearer
        const floating[::1] gaps=None,       # IN  (center_index,) squared distances from
                                             #     the chosen centres to this one
        int center_index=0,                  # IN  this centre's index among the chosen
):
    """closest_sq = min(closest_sq, |x - center|**2), and its weighted sum per row chunk.

    The per-chunk sums (chunks as in ``row_chunks``) let the caller draw the next centre in
    proportion to ``w * closest_sq`` without a cumulative sum over all rows. With
    ``nearest`` and ``gaps``, pruned as kmeanspp_candidate_potentials.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef Py_ssize_t n_chunks, chunk_rows, c
    cdef int* nearest_p = NULL
    cdef const floating* gaps_p = NULL
    _check_shapes(X, sample_weight, center)
    _row_chunks(n, &n_chunks, &chunk_rows)
    # Per row: a distance, a minimum, a store and a weighted sum.
    n_threads = _threads_for(n_chunks, n_threads, n * (d + 16))
    if closest_sq.shape[0] != n or chunk_potentials.shape[0] != n_chunks:
        raise ValueError("kmeanspp_update_closest: array sizes do not match X")
    if nearest is not None:
        if d < ROW_MAJOR_MIN_FEATURES or gaps is None or nearest.shape[0] != n \
                or gaps.shape[0] != center_index or center_index < 1:
            raise ValueError("kmeanspp_update_closest: nearest and gaps need "
                             f"{ROW_MAJOR_MIN_FEATURES} features or more, one entry per "
                             "row and a gap per centre chosen before this one")
        nearest_p, gaps_p = &nearest[0], &gaps[0]
    cdef floating[:, ::1] scratch = _scratch(X, n_threads)

    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
        if d >= ROW_MAJOR_MIN_FEATURES:
            chunk_potentials[c] = _update_closest_rows_chunk(
                &X[0, 0], &sample_weight[0], &center[0, 0], d, gaps_p, center_index,
                c * chunk_rows, min(n, (c + 1) * chunk_rows), &closest_sq[0], nearest_p)
        else:
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


def take_labels(
        const int[::1] labels,               # IN  (m,)
        const int[::1] index,                # IN  (n,) values in [0, m)
        int[::1] out,                        # OUT (n,) labels[index]
        int n_threads=1,
):
    """``out[i] = labels[index[i]]`` in parallel (numpy's gather is serial: 11 ms for the
    4.4M photo pixels, whose labels come from their distinct colours')."""
    cdef Py_ssize_t n = index.shape[0], m = labels.shape[0], n_chunks, chunk_rows, c, i, j
    cdef Py_ssize_t out_of_range = 0
    if out.shape[0] != n:
        raise ValueError("take_labels: out must have one entry per index")
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n)
    # (Dynamic: a chunk's cost is its cache misses, far fewer in an image's runs of equal
    # pixels; see grid_distinct_rows.)
    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
        for i in range(c * chunk_rows, min(n, (c + 1) * chunk_rows)):
            j = index[i]
            if j < 0 or j >= m:
                out_of_range += 1  # (a reduction over the threads)
                j = 0
            out[i] = labels[j] if m else 0
    if out_of_range:
        raise ValueError("take_labels: index out of range")


def put_labels(
        const int[::1] labels,               # IN  (n,)
        const Py_ssize_t[::1] index,         # IN  (n,) a permutation of [0, n)
        int[::1] out,                        # OUT (n,) out[index] = labels
        int n_threads=1,
):
    """``out[index[i]] = labels[i]`` in parallel: the labels of rows that were sorted by
    ``index`` (zorder_sort's order) in their own order. (numpy's scatter is serial: 5 ms
    for the photo's 855k colours.) Every entry of ``index`` must be distinct."""
    cdef Py_ssize_t n = index.shape[0], n_chunks, chunk_rows, c, i, j
    cdef Py_ssize_t out_of_range = 0
    if labels.shape[0] != n or out.shape[0] != n:
        raise ValueError("put_labels: labels, index and out must have the same length")
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n)
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        for i in range(c * chunk_rows, min(n, (c + 1) * chunk_rows)):
            j = index[i]
            if j < 0 or j >= n:
                out_of_range += 1  # (a reduction over the threads)
            else:
                out[j] = labels[i]
    if out_of_range:
        raise ValueError("put_labels: index out of range")


cdef enum:
    # Rows added in turn to this many copies of _column_sums's totals (below 5 features).
    COLUMN_SUM_WAYS = 4


cdef inline void _column_sums_d(
        const floating* X, Py_ssize_t d,     # IN  (n, d)
        const floating* weights,             # IN  (n,) or NULL: all 1
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows to sum
        const double* mean,                  # IN  (d,) or NULL
        double* out,                         # OUT (d,) weighted sum of the rows, or with
                                             #     mean, of the squares of the rows less mean
) noexcept nogil:
    # Below 5 features, in local copies that consecutive rows take turns in: added to out[f]
    # itself, each row waited for the previous row's store (15 ms of two threads for the
    # photo pixels' two passes, 4 with this).
    cdef double part[COLUMN_SUM_WAYS][MAX_UNROLLED_FEATURES]
    cdef double t, w
    cdef Py_ssize_t i, f, way
    if d > MAX_UNROLLED_FEATURES:
        for f in range(d):
            out[f] = 0
        for i in range(start, stop):
            w = weights[i] if weights != NULL else 1
            for f in range(d):
                t = X[i * d + f] - (mean[f] if mean != NULL else 0)
                out[f] += w * (t * t if mean != NULL else t)
        return
    for way in range(COLUMN_SUM_WAYS):
        for f in range(MAX_UNROLLED_FEATURES):
            part[way][f] = 0
    for i in range(start, stop):
        way = i % COLUMN_SUM_WAYS
        w = weights[i] if weights != NULL else 1
        for f in range(d):
            t = X[i * d + f] - (mean[f] if mean != NULL else 0)
            part[way][f] += w * (t * t if mean != NULL else t)
    for f in range(d):
        out[f] = (part[0][f] + part[1][f]) + (part[2][f] + part[3][f])


cdef void _column_sums(const floating* X, Py_ssize_t d, const floating* weights,
                       Py_ssize_t start, Py_ssize_t stop, const double* mean,
                       double* out) noexcept nogil:
    """_column_sums_d, compiled separately for colours (d = 3)."""
    if d == 3:
        _column_sums_d(X, 3, weights, start, stop, mean, out)
    else:
        _column_sums_d(X, d, weights, start, stop, mean, out)


def mean_variance(const floating[:, ::1] X, int n_threads=1, sample_weight=None):
    """Mean over the features of each feature's variance (the population variance), in
    float64: two passes over X, each summing its chunks of rows in parallel and the chunks'
    sums in chunk order, so that the result does not depend on ``n_threads``. (numpy's
    column sums over millions of rows took 160 ms of one thread on the photo pixels.)
    With ``sample_weight`` (X's dtype), the weighted variance: that of X's rows repeated
    as many times as their weights say (the distinct rows and their counts).
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_chunks, chunk_rows, c, f
    cdef const floating[::1] w
    cdef const floating* weights = NULL
    cdef double total = n
    if n == 0 or d == 0:
        raise ValueError("mean_variance: X must have rows and columns")
    if sample_weight is not None:
        w = sample_weight
        if w.shape[0] != n:
            raise ValueError("mean_variance: sample_weight must have one entry per row of X")
        weights = &w[0]
        total = np.sum(sample_weight, dtype=np.float64)
        if not total > 0:
            raise ValueError("mean_variance: the weights must have a positive sum")
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n * d)
    cdef double[:, ::1] sums = _chunk_buffers(n_chunks, d)
    cdef double[:, ::1] squares = _chunk_buffers(n_chunks, d)
    cdef double[::1] mean = np.zeros(d)
    cdef double t
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        _column_sums(&X[0, 0], d, weights, c * chunk_rows, min(n, (c + 1) * chunk_rows),
                     NULL, &sums[c, 0])
    for c in range(n_chunks):
        for f in range(d):
            mean[f] += sums[c, f]
    for f in range(d):
        mean[f] /= total
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        _column_sums(&X[0, 0], d, weights, c * chunk_rows, min(n, (c + 1) * chunk_rows),
                     &mean[0], &squares[c, 0])
    t = 0
    for f in range(d):
        for c in range(1, n_chunks):
            squares[0, f] += squares[c, f]
        t += squares[0, f] / total
    return t / d


cdef uint64_t _largest_bits(const floating* values, Py_ssize_t count) noexcept nogil:
    """The bits of the largest |value|, sign cleared: as unsigned integers such bits order
    as the magnitudes do, with infinity and NaN above every finite value, and an integer
    maximum vectorizes (a floating one must not reorder around NaN)."""
    cdef uint64_t top = 0, bits, magnitude = 1
    cdef uint32_t top32 = 0, bits32
    cdef Py_ssize_t i
    magnitude = (magnitude << 63) - 1  # all bits but the sign's
    for i in range(count):
        if floating is float:
            memcpy(&bits32, &values[i], 4)
            bits32 = bits32 & 0x7FFFFFFF
            top32 = bits32 if bits32 > top32 else top32
        else:
            memcpy(&bits, &values[i], 8)
            bits = bits & magnitude
            top = bits if bits > top else top
    return top32 if floating is float else top


def largest_magnitude(const floating[:, ::1] X, int n_threads=1):
    """The largest |x| of X (0 when empty), or infinity if X holds NaN or infinity (chunks
    of rows in parallel; one read of X serves both checks of validation)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_chunks, chunk_rows, c
    cdef uint64_t top = 0
    cdef uint32_t top32
    cdef float value32
    cdef double value
    if n == 0 or d == 0:
        return 0.0
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n * d // 4)
    cdef uint64_t[::1] chunk_top = np.zeros(n_chunks, dtype=np.uint64)
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        chunk_top[c] = _largest_bits(&X[c * chunk_rows, 0], (min(n, (c + 1) * chunk_rows)
                                                            - c * chunk_rows) * d)
    for c in range(n_chunks):
        top = max(top, chunk_top[c])
    if floating is float:
        top32 = <uint32_t>top
        memcpy(&value32, &top32, 4)
        value = value32
    else:
        memcpy(&value, &top, 8)
    return value if value == value else INFINITY


def sq_distances(
        const floating[:, ::1] X,            # IN  (n, d)
        const floating[:, ::1] centers,      # IN  (k, d)
        floating[:, ::1] out,                # OUT (n, k) squared distances
        int n_threads=1,
):
    """Squared Euclidean distance of every row to every centre (used by ``transform``, and
    for k-means++'s gaps between centres)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t n_blocks = (n + BLOCK_ROWS - 1) // BLOCK_ROWS
    cdef Py_ssize_t b, i, j, n_real
    cdef floating* block_t
    cdef floating* dist
    if centers.shape[1] != d or out.shape[0] != n or out.shape[1] != k:
        raise ValueError("sq_distances: array shapes do not match")
    if n == 0 or k == 0:
        return
    n_threads = _threads_for(n_blocks, n_threads, n * k * d)
    if d >= ROW_MAJOR_MIN_FEATURES:
        for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
            _row_sq_distances_all(&X[i, 0], &centers[0, 0], k, d, &out[i, 0])
        return
    cdef floating[:, ::1] scratch = _scratch(X, n_threads, extra=BLOCK_ROWS)
    for b in prange(n_blocks, nogil=True, schedule="static", num_threads=n_threads):
        block_t = &scratch[threadid(), 0]
        dist = block_t + d * BLOCK_ROWS
        n_real = _transpose_block(&X[0, 0], d, b * BLOCK_ROWS, n, block_t)
        for j in range(k):
            _block_sq_distances(block_t, &centers[j, 0], d, dist)
            for i in range(n_real):
                out[b * BLOCK_ROWS + i, j] = dist[i]


def assigned_sq_distances(
        const floating[:, ::1] X,            # IN  (n, d)
        const floating[:, ::1] centers,      # IN  (k, d)
        const int[::1] labels,               # IN  (n,) each row's centre, in [0, k)
        double[::1] out,                     # OUT (n,) squared distance of each row to it
        int n_threads=1,
):
    """Squared distance of every row to its own centre, in float64 as _sq_distance sums it
    (used to find the farthest rows when a cluster is empty). One running sum in feature
    order made a chain of d dependent additions a row: blobs 200k x 128, 12 ms on two
    threads."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t i
    if centers.shape[1] != d or labels.shape[0] != n or out.shape[0] != n:
        raise ValueError("assigned_sq_distances: array shapes do not match")
    _check_labels(labels, k, "assigned_sq_distances", n_threads)
    n_threads = _threads_for(n // MIN_CHUNK_ROWS + 1, n_threads, n * d)
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        out[i] = _sq_distance(&X[i, 0], &centers[labels[i], 0], d)


def labelled_inertia(
        const floating[:, ::1] X,            # IN  (n, d)
        const floating[::1] sample_weight,   # IN  (n,) or None: all 1
        const floating[:, ::1] centers,      # IN  (k, d)
        const int[::1] labels,               # IN  (n,) each row's centre, in [0, k)
        int n_threads=1,
):
    """The weighted sum of squared distances of the rows to their labelled centres.

    Summed as lloyd_pass sums its inertia for d > MAX_UNROLLED_FEATURES (each of its chunks
    adds w |x - c|^2 of its rows in order, in float64, and the chunks are added in order):
    given lloyd_pass's labels, its inertia bit for bit, without its search. (For fewer
    features lloyd_pass sums its kernel's distances in X's dtype: the same to rounding.)
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = centers.shape[0]
    cdef Py_ssize_t i, c, n_chunks, chunk_rows
    cdef const floating* weights = NULL
    cdef double inertia = 0, total
    if sample_weight is not None:
        _check_shapes(X, sample_weight, centers)
        weights = &sample_weight[0] if n else NULL
    if centers.shape[1] != d or labels.shape[0] != n:
        raise ValueError("labelled_inertia: array shapes do not match")
    _check_labels(labels, k, "labelled_inertia", n_threads)
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n * d)
    cdef double[:, ::1] chunk_inertia = _chunk_buffers(n_chunks, 1)
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        total = 0
        for i in range(c * chunk_rows, min(n, (c + 1) * chunk_rows)):
            total = total + (1 if weights == NULL else weights[i]) * _sq_distance(
                &X[i, 0], &centers[labels[i], 0], d)
        chunk_inertia[c, 0] = total
    for c in range(n_chunks):
        inertia += chunk_inertia[c, 0]
    return inertia


cdef _check_labels(const int[::1] labels, Py_ssize_t k, str name, int n_threads):
    """Every label a centre: a bad one would read outside the centres. Counted in parallel
    chunks: checked row by row on one thread, it took a quarter of assigned_sq_distances
    on two (the photo's 855k colours) and of labelled_inertia (blobs 1M x 8)."""
    cdef Py_ssize_t n = labels.shape[0], i, c, n_chunks, chunk_rows, count
    _row_chunks(n, &n_chunks, &chunk_rows)
    cdef Py_ssize_t[::1] bad = np.zeros(max(n_chunks, 1), dtype=np.intp)
    n_threads = _threads_for(n_chunks, n_threads, n)
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        count = 0
        for i in range(c * chunk_rows, min(n, (c + 1) * chunk_rows)):
            count = count + ((labels[i] < 0) | (labels[i] >= k))
        bad[c] = count
    if np.any(np.asarray(bad)):
        for i in range(n):
            if not 0 <= labels[i] < k:
                raise ValueError(f"{name}: label {labels[i]} of row {i} is not a centre")


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


# Large temporaries are allocated through _allocate_empty: numpy.empty, or what fastkm sets
# with set_allocator (fastkm._scratch.empty, whose buffers outlive a fit: see there).
_allocate_empty = np.empty


def set_allocator(empty):
    """Allocate the kernels' large temporaries with ``empty(shape, dtype)`` (which must
    behave as numpy.empty), or with numpy.empty again for None."""
    global _allocate_empty
    _allocate_empty = np.empty if empty is None else empty


cdef _empty(shape, dtype):
    return _allocate_empty(shape, dtype)


cdef _zeros(shape, dtype):
    out = _allocate_empty(shape, dtype)
    out.fill(0)
    return out


cdef _chunk_buffers(Py_ssize_t n_chunks, Py_ssize_t size, bint zeroed=True):
    """(n_chunks, size) float64 buffers, each row padded to its own cache lines; zeroed, or
    left unset (from the scratch allocator).

    Neighbouring chunks run on different threads; sharing a cache line would make every
    update of one stall the other (false sharing).
    """
    cdef Py_ssize_t padded = (size + 2 * CACHE_LINE_DOUBLES - 1) // CACHE_LINE_DOUBLES \
        * CACHE_LINE_DOUBLES
    if not zeroed:
        return _empty((max(n_chunks, 1), padded), np.float64)
    return np.zeros((max(n_chunks, 1), padded), dtype=np.float64)


cdef tuple _sums_buffers(Py_ssize_t n_chunks, Py_ssize_t chunk_rows, int n_threads,
                         Py_ssize_t ways, Py_ssize_t k, Py_ssize_t d, bint update_sums):
    """A bounded pass's per-chunk sums, ``(acc, touched, old_labels)``: zeroed ways copies of
    every cluster's sums (touched and old_labels unused); or, to update the sums, one copy
    left unset (_accumulate_changes zeroes the clusters it touches), the flags of those
    clusters and each thread's copy of its chunk's labels."""
    if not update_sums:
        return (_chunk_buffers(n_chunks, ways * k * (d + 1)), np.zeros((1, 1), np.uint8),
                np.empty((1, 1), np.intc))
    return (_chunk_buffers(n_chunks, k * (d + 1), zeroed=False),
            np.zeros((max(n_chunks, 1), k), np.uint8),
            _empty((n_threads, max(chunk_rows, 1)), np.intc))


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

cdef enum:
    RGB_KEYS = 1 << 24
    PIXEL_BLOCK = 4096
    KEY_BLOCK = 1 << 16  # counters per block of histogram_colours' passes


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
    for b in prange(n_blocks, nogil=True, schedule="dynamic", num_threads=n_threads):
        for i in range(b * PIXEL_BLOCK, min(n, (b + 1) * PIXEL_BLOCK)):
            fastkm_atomic_increment(&counts[_rgb_key(&rgb[i, 0])])


def histogram_colours(
        const uint32_t[::1] counts,          # IN  (2**24,) pixel count per 24-bit colour
        int n_threads=1,
):
    """The colours that ``counts`` holds, in increasing key order.

    Returns ``(keys, pixel_counts, colours)``: the (m,) uint32 keys ``r << 16 | g << 8 | b``
    of the non-zero counters, their (m,) int64 counts and the (m, 3) uint8 colours. Two
    parallel passes over blocks of counters (count, then write at each block's offset) in
    place of the serial ``np.flatnonzero`` and gathers.
    """
    cdef Py_ssize_t n_blocks = RGB_KEYS // KEY_BLOCK, b, key, m
    if counts.shape[0] != RGB_KEYS:
        raise ValueError("histogram_colours: expected 2**24 counters")
    n_threads = _threads_for(n_blocks, n_threads, RGB_KEYS // 4)
    block_offsets = np.zeros(n_blocks + 1, dtype=np.intp)
    cdef Py_ssize_t[::1] offsets = block_offsets
    for b in prange(n_blocks, nogil=True, schedule="static", num_threads=n_threads):
        m = 0
        for key in range(b * KEY_BLOCK, (b + 1) * KEY_BLOCK):
            m = m + (counts[key] != 0)
        offsets[b + 1] = m
    np.cumsum(block_offsets, out=block_offsets)
    m = offsets[n_blocks]
    keys_array = np.empty(m, dtype=np.uint32)
    counts_array = np.empty(m, dtype=np.int64)
    colours_array = np.empty((m, 3), dtype=np.uint8)
    cdef uint32_t[::1] keys = keys_array
    cdef int64_t[::1] pixel_counts = counts_array
    cdef uint8_t[:, ::1] colours = colours_array
    cdef Py_ssize_t j
    for b in prange(n_blocks, nogil=True, schedule="dynamic", num_threads=n_threads):
        j = offsets[b]
        for key in range(b * KEY_BLOCK, (b + 1) * KEY_BLOCK):
            if counts[key] != 0:
                keys[j] = <uint32_t>key
                pixel_counts[j] = counts[key]
                colours[j, 0] = <uint8_t>(key >> 16)
                colours[j, 1] = <uint8_t>((key >> 8) & 255)
                colours[j, 2] = <uint8_t>(key & 255)
                j = j + 1
    return keys_array, counts_array, colours_array


def pool_cells(
        const uint8_t[:, ::1] colours,       # IN  (n, C) 8-bit colour of each point
        int shift,                           # IN  a cell holds the colours that agree but for
                                             #     the low ``shift`` bits of each channel
        const floating[:, ::1] points,       # IN  (n, d) the points
        const floating[::1] weights,         # IN  (n,) their weights; zero weights are left out
):
    """Points pooled by colour cell: each used cell's weighted mean point and total weight.

    Returns ``(means, cell_weights, corners)``: (m, d) and (m,) float64, and the cells'
    (m, C) uint8 lowest colours (the colours with their low ``shift`` bits cleared), in
    increasing cell order. Serial, in row order, so the sums are the same on every run.
    The cell index needs ``C * (8 - shift) <= 24`` bits.
    """
    cdef Py_ssize_t n = colours.shape[0], n_channels = colours.shape[1], d = points.shape[1]
    cdef int bits = 8 - shift
    if not 0 <= shift <= 8 or n_channels * bits > 24:
        raise ValueError(f"pool_cells: {n_channels} channels of {bits} bits are more than 24")
    if points.shape[0] != n or weights.shape[0] != n:
        raise ValueError("pool_cells: colours, points and weights have different lengths")
    # (np.zeros maps untouched pages lazily: only the cells in use cost memory.)
    slot_array = np.zeros(1 << (n_channels * bits), dtype=np.int32)
    used_array = np.empty(n, dtype=np.int32)
    cdef int[::1] slot = slot_array
    cdef int[::1] used = used_array
    cdef Py_ssize_t i, c, f, cell, m = 0
    with nogil:
        for i in range(n):  # list the used cells ...
            if weights[i] > 0:
                cell = _cell_of(&colours[i, 0], n_channels, shift)
                if not slot[cell]:
                    slot[cell] = 1
                    used[m] = <int>cell
                    m += 1
    used_array[:m].sort()  # ... number them in increasing order ...
    with nogil:
        for i in range(m):
            slot[used[i]] = <int>i
    sums_array = np.zeros((m, d))
    totals_array = np.zeros(m)
    cdef double[:, ::1] sums = sums_array
    cdef double[::1] totals = totals_array
    cdef double w
    with nogil:
        for i in range(n):  # ... and add each point to its cell
            w = weights[i]
            if w > 0:
                cell = slot[_cell_of(&colours[i, 0], n_channels, shift)]
                for f in range(d):
                    sums[cell, f] += w * points[i, f]
                totals[cell] += w
    sums_array /= totals_array[:, None]
    corners_array = np.empty((m, n_channels), dtype=np.uint8)
    cdef uint8_t[:, ::1] corners = corners_array
    for i in range(m):
        for c in range(n_channels):
            corners[i, c] = <uint8_t>(
                ((used[i] >> ((n_channels - 1 - c) * bits)) & ((1 << bits) - 1)) << shift)
    return sums_array, totals_array, corners_array


cdef inline Py_ssize_t _cell_of(const uint8_t* colour, Py_ssize_t n_channels,
                                int shift) noexcept nogil:
    cdef Py_ssize_t c, cell = 0
    for c in range(n_channels):
        cell = (cell << (8 - shift)) | (colour[c] >> shift)
    return cell


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
    for b in prange(n_blocks, nogil=True, schedule="dynamic", num_threads=n_threads):
        for i in range(b * PIXEL_BLOCK, min(n, (b + 1) * PIXEL_BLOCK)):
            indices[i] = lookup[_rgb_key(&rgb[i, 0])]


cdef struct _Planes:
    # A palette by channel (r[0:padded], g[...], b[...]), padded to a multiple of
    # PALETTE_LANES with colours too far away to be chosen, and a buffer of as many distances.
    float* values
    float* dist
    Py_ssize_t k, padded

cdef enum:
    PALETTE_LANES = 16


cdef int _planes_init(_Planes* planes, const float[:, ::1] palette) noexcept nogil:
    """Fill ``planes`` from ``palette``; -1 when out of memory (free with _planes_free)."""
    cdef Py_ssize_t j, c, k = palette.shape[0]
    planes.k = k
    planes.padded = (k + PALETTE_LANES - 1) // PALETTE_LANES * PALETTE_LANES
    planes.values = <float*>malloc(3 * planes.padded * sizeof(float))
    planes.dist = <float*>malloc(planes.padded * sizeof(float))
    if planes.values == NULL or planes.dist == NULL:
        return -1
    for c in range(3):
        for j in range(planes.padded):
            # (1e18 squared is still finite in float32)
            planes.values[c * planes.padded + j] = palette[j, c] if j < k else <float>1e18
    return 0


cdef void _planes_free(_Planes* planes) noexcept nogil:
    free(planes.values)
    free(planes.dist)


cdef inline int _cached_nearest(const _Planes* planes, short[::1] nearest, float r,
                               float g, float b) noexcept nogil:
    """_nearest_colour of (r, g, b) through the cache ``nearest``, by the 8-bit colour
    (r, g, b) rounds to: the first colour to round to it decides for all."""
    cdef int key = ((<int>(r + 0.5)) << 16) | ((<int>(g + 0.5)) << 8) | (<int>(b + 0.5))
    cdef int j = nearest[key] - 1
    if j < 0:
        j = _nearest_colour(planes, r, g, b)
        nearest[key] = <short>(j + 1)
    return j


cdef inline int _nearest_colour(const _Planes* planes, float r, float g,
                                float b) noexcept nogil:
    """Index of the palette colour nearest to (r, g, b); ties go to the lowest index.

    In two loops the compiler vectorizes: the distances, then PALETTE_LANES running minima
    and where each was found (the first index wins a tie, as later ones must be smaller)."""
    cdef Py_ssize_t j, lane, n = planes.padded
    cdef const float* red = planes.values
    cdef const float* green = planes.values + n
    cdef const float* blue = planes.values + 2 * n
    cdef float* dist = planes.dist
    cdef float dr, dg, db, best
    cdef float lanes[PALETTE_LANES]
    cdef int where[PALETTE_LANES]
    cdef int found
    for j in range(n):
        dr = r - red[j]
        dg = g - green[j]
        db = b - blue[j]
        dist[j] = dr * dr + dg * dg + db * db
    for lane in range(PALETTE_LANES):
        lanes[lane] = dist[lane]
        where[lane] = <int>lane
    for j in range(1, n // PALETTE_LANES):
        for lane in range(PALETTE_LANES):
            where[lane] = <int>(j * PALETTE_LANES + lane) if dist[j * PALETTE_LANES + lane] \
                < lanes[lane] else where[lane]
            lanes[lane] = min(lanes[lane], dist[j * PALETTE_LANES + lane])
    best = lanes[0]
    found = where[0]
    for lane in range(1, PALETTE_LANES):
        if lanes[lane] < best or (lanes[lane] == best and where[lane] < found):
            best = lanes[lane]
            found = where[lane]
    return found


def dither_rgb(
        const uint8_t[:, :, ::1] image,      # IN  (h, w, 3) pixels
        const uint8_t[:, ::1] skip,          # IN  (h, w) 1 where a pixel is not dithered
                                             #     (transparent): it passes no error on
        const float[:, ::1] palette,         # IN  (K, 3) palette colours, 0-255
        float accept_full_error,             # IN  a pixel takes the incoming error in
                                             #     proportion to its own undithered error,
                                             #     fully from this distance on
        short[::1] nearest,                  # IN/OUT (2**24,) 1 + the nearest palette index
                                             #     of each 24-bit colour, 0 where not known yet
        float strength,                      # IN  share of its error a pixel passes on
        float max_error,                     # IN  errors longer than this are shrunk
        uint8_t[:, ::1] indices,             # OUT (h, w) palette index of each pixel
):
    """Floyd-Steinberg error diffusion in serpentine order, with the error held in check.

    Each pixel adds the error its neighbours passed to it, times its distance to its own
    nearest palette colour over ``accept_full_error`` (at most 1: a pixel the palette
    already matches stays clean), is mapped to the nearest palette colour (through the
    ``nearest`` cache, filled as colours appear),
    and passes ``strength`` times its new error on (7/16 ahead, 3/16, 5/16 and 1/16 on the
    next row). An error longer than ``max_error`` is shrunk to 3/4 first, so that one bad
    match does not streak across the image. Sequential (error diffusion is), deterministic.
    """
    cdef Py_ssize_t h = image.shape[0], w = image.shape[1]
    if image.shape[2] != 3 or palette.shape[1] != 3 or palette.shape[0] < 1 \
            or palette.shape[0] > 32766 or nearest.shape[0] != RGB_KEYS \
            or skip.shape[0] != h or skip.shape[1] != w \
            or indices.shape[0] != h or indices.shape[1] != w:
        raise ValueError("dither_rgb: array shapes do not match")
    if not accept_full_error > 0:
        raise ValueError("dither_rgb: accept_full_error must be positive")
    # Error carried into this row and the next, with one guard column at each end.
    current_arr = np.zeros((w + 2, 3), dtype=np.float32)
    following_arr = np.zeros((w + 2, 3), dtype=np.float32)
    cdef float[:, ::1] current = current_arr
    cdef float[:, ::1] following = following_arr
    cdef float max_error_sq = max_error * max_error
    cdef _Planes planes
    if _planes_init(&planes, palette) != 0:
        _planes_free(&planes)
        raise MemoryError()
    try:
        _dither_rows(image, skip, palette, &planes, accept_full_error, nearest, strength,
                     max_error_sq, indices, current, following)
    finally:
        _planes_free(&planes)


cdef void _dither_rows(
        const uint8_t[:, :, ::1] image, const uint8_t[:, ::1] skip,
        const float[:, ::1] palette, const _Planes* planes, float accept_full_error,
        short[::1] nearest, float strength, float max_error_sq, uint8_t[:, ::1] indices,
        float[:, ::1] current, float[:, ::1] following,
) noexcept:
    """dither_rgb's pass (see there)."""
    cdef Py_ssize_t h = image.shape[0], w = image.shape[1]
    cdef Py_ssize_t y, x, step, c, forward
    cdef float colour[3]
    cdef float error[3]
    cdef float length_sq, share, acceptance
    cdef int j
    cdef float[:, ::1] swap
    with nogil:
        for y in range(h):
            forward = 1 if y % 2 == 0 else -1
            for step in range(w):
                x = step if forward == 1 else w - 1 - step
                if skip[y, x]:
                    continue
                j = _cached_nearest(planes, nearest, image[y, x, 0], image[y, x, 1],
                                    image[y, x, 2])
                length_sq = 0
                for c in range(3):
                    error[c] = image[y, x, c] - palette[j, c]
                    length_sq = length_sq + error[c] * error[c]
                acceptance = min(<float>sqrt(length_sq) / accept_full_error, <float>1)
                for c in range(3):
                    colour[c] = min(255.0, max(0.0, image[y, x, c]
                                               + acceptance * current[x + 1, c]))
                j = _cached_nearest(planes, nearest, colour[0], colour[1], colour[2])
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


# ---------------------------------------------------------------------------------------------
# Distinct rows (fastkm.KMeans on data with many repeated rows, such as the pixels of a photo)
#
# The k-means of rows repeated with multiplicities is the k-means of their distinct rows
# weighted by those multiplicities: same labels, same centres (up to the order of the sums).
# distinct_rows first moves the rows into ROW_BUCKETS buckets by the high bits of their hash
# (a radix scatter, X read twice in order), then finds each bucket's distinct rows on its own,
# in parallel. A bucket's hash table and rows stay in the core's cache, where one table for
# all rows (855 thousand colours of a photo: megabytes) made nearly every lookup a cache
# miss. With unit weights, a row equal to the row before it (a third of a photo's pixels)
# is not moved at all: it counts for one more in its run's first row. The distinct rows come
# out in the order of their first occurrence in X, whatever the thread count.

from libc.stdlib cimport calloc, free, malloc, realloc

cdef enum:
    ROW_BUCKETS = 255
    # The bucket of a row equal to the one before it in its chunk (a run of equal pixels),
    # with unit weights: such a row is not moved to a bucket but counted with the first row
    # of its run (the run's head).
    IN_RUN = 255
    # A bucket's table starts with room for this many distinct rows (it doubles as needed).
    FIRST_BUCKET_ROOM = 256
    # See _bucket_chunk_d (the sum there is written out for 4).
    COUNT_WAYS = 4

cdef extern from *:
    """
    #define FASTKM_HASH_SEED 0x9E3779B97F4A7C15ULL
    #define FASTKM_HASH_MULTIPLIER 0xFF51AFD7ED558CCDULL
    #define FASTKM_HASH_FINAL 0xC4CEB9FE1A85EC53ULL
    /* The distinct rows found so far by the buckets that are done, shared by the threads:
       a lower bound on the total, so a bucket may stop as soon as it exceeds the limit. */
    #if defined(__GNUC__) || defined(__clang__)
    #define fastkm_add_shared(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
    #define fastkm_read_shared(p) __atomic_load_n((p), __ATOMIC_RELAXED)
    #else
    static Py_ssize_t fastkm_add_shared(Py_ssize_t* p, Py_ssize_t v) {
        Py_ssize_t total;
        #pragma omp atomic capture
        total = *p += v;
        return total;
    }
    static Py_ssize_t fastkm_read_shared(Py_ssize_t* p) {
        Py_ssize_t total;
        #pragma omp atomic read
        total = *p;
        return total;
    }
    #endif
    """
    const uint64_t FASTKM_HASH_SEED
    const uint64_t FASTKM_HASH_MULTIPLIER
    const uint64_t FASTKM_HASH_FINAL
    Py_ssize_t fastkm_add_shared(Py_ssize_t* p, Py_ssize_t v) noexcept nogil
    Py_ssize_t fastkm_read_shared(Py_ssize_t* p) noexcept nogil


cdef inline uint64_t _value_bits(floating v) noexcept nogil:
    """A value's bits, the same for -0.0 and 0.0 (which compare equal)."""
    cdef uint32_t bits32
    cdef uint64_t bits
    v = v + 0  # -0.0 + 0 is +0.0 (round to nearest); every other value is unchanged
    if floating is float:
        memcpy(&bits32, &v, 4)
        return bits32
    else:
        memcpy(&bits, &v, 8)
        return bits


cdef inline uint64_t _row_hash(const floating* x, Py_ssize_t d) noexcept nogil:
    """A 64-bit hash of a row's values, the same for -0.0 and 0.0 (which compare equal).

    A sum of products of the values' bits with odd constants, one per feature (products
    that do not wait for each other, unlike a chain of multiplications; the constants are
    powers of one odd number, since with constants in arithmetic progression the 3-feature rows
    (a, b, c) and (a + 1, b - 2, c + 1) collided), then MurmurHash3's finalizer, so that
    every bit of the row reaches the top and bottom bits."""
    cdef uint64_t h = FASTKM_HASH_SEED, bits, multiplier = FASTKM_HASH_MULTIPLIER
    cdef Py_ssize_t f
    for f in range(d):
        bits = _value_bits(x[f])
        h = h + (bits ^ (bits >> 32)) * multiplier  # (the high half of a double's bits
        multiplier = multiplier * FASTKM_HASH_FINAL  # is all of a small integer's)
    h = (h ^ (h >> 33)) * FASTKM_HASH_MULTIPLIER
    h = (h ^ (h >> 33)) * FASTKM_HASH_FINAL
    return h ^ (h >> 33)


cdef inline bint _same_row(const floating* x, const floating* y, Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t f
    for f in range(d):
        if x[f] != y[f]:
            return False
    return True


cdef inline Py_ssize_t _bucket_distinct_d(
        floating* rows,                      # IN/OUT (n_rows, d) the bucket's rows, in X's
                                             #     order; its first (returned) rows become
                                             #     its distinct rows, in the order they came
        const floating* row_weights,         # IN  (n_rows,) their weights, or NULL: the
                                             #     weights are in ``local``
        Py_ssize_t n_rows, Py_ssize_t d,
        int* local,                          # IN/OUT (n_rows,) in: the length of each row's
                                             #     run (unit weights); out: each row's index
                                             #     j among the distinct rows, ~j (negative)
                                             #     for the first occurrence of each
        double** weights,                    # OUT (returned,) summed weight of each distinct
                                             #     row, malloc'ed: the caller frees it
        Py_ssize_t max_distinct,             # IN  give up beyond this many in all buckets
        Py_ssize_t* found,                   # IN/OUT distinct rows of the buckets done
) noexcept nogil:
    """The distinct rows of one bucket. Returns how many there are, -1 when out of memory,
    -2 after giving up (this bucket's rows and those of the buckets done are more than
    max_distinct). The table holds, per slot, the high half of the row's hash and 1 + the
    distinct row's index; the distinct rows are moved to the front of ``rows`` (where the
    rows already read were), so that the comparisons read what the bucket just wrote."""
    cdef Py_ssize_t room = min(n_rows, <Py_ssize_t>FIRST_BUCKET_ROOM)
    cdef uint64_t capacity = 16, mask, h, tag, slot
    while capacity < 2 * <uint64_t>room:
        capacity = 2 * capacity
    mask = capacity - 1
    cdef Py_ssize_t i, f, m = 0, pos, previous = -1
    cdef double w
    cdef uint64_t* table = <uint64_t*>calloc(capacity, sizeof(uint64_t))
    cdef uint64_t* grown
    cdef double* sums = <double*>malloc(max(1, room) * sizeof(double))
    cdef double* more
    weights[0] = NULL
    if table == NULL or sums == NULL:
        free(table)
        free(sums)
        return -1
    for i in range(n_rows):
        w = <double>local[i] if row_weights == NULL else <double>row_weights[i]
        # A row equal to the bucket's previous one (in a run of equal pixels broken by the
        # chunks, or among pixels of another bucket) needs no lookup.
        if previous >= 0 and _same_row(rows + i * d, rows + previous * d, d):
            sums[previous] += w
            local[i] = <int>previous
            continue
        h = _row_hash(rows + i * d, d)
        tag = h >> 32 << 32
        pos = <Py_ssize_t>(h & mask)
        while True:
            slot = table[pos]
            if slot == 0:
                if m >= max_distinct - fastkm_read_shared(found):
                    m = -2
                    break
                if m == room:
                    room = 2 * room
                    more = <double*>realloc(sums, room * sizeof(double))
                    if more == NULL:
                        m = -1
                        break
                    sums = more
                table[pos] = tag | <uint64_t>(m + 1)
                for f in range(d):  # row m was read already (m <= i)
                    rows[m * d + f] = rows[i * d + f]
                sums[m] = w
                previous = ~m
                m = m + 1
                break
            if slot >> 32 << 32 == tag:
                previous = <Py_ssize_t>(slot & <uint32_t>-1) - 1
                if _same_row(rows + i * d, rows + previous * d, d):
                    sums[previous] += w
                    break
            pos = <Py_ssize_t>((pos + 1) & mask)
        if m < 0:
            break
        local[i] = <int>previous
        previous = previous if previous >= 0 else ~previous
        if 2 * <uint64_t>m > capacity:  # at most half full: doubled
            grown = <uint64_t*>calloc(2 * capacity, sizeof(uint64_t))
            if grown == NULL:
                m = -1
                break
            capacity = 2 * capacity
            mask = capacity - 1
            for pos in range(m):
                h = _row_hash(rows + pos * d, d)
                while grown[h & mask] != 0:
                    h = (h & ~mask) | ((h + 1) & mask)
                grown[h & mask] = (h >> 32 << 32) | <uint64_t>(pos + 1)
            free(table)
            table = grown
    free(table)
    if m < 0:
        free(sums)
        return m
    fastkm_add_shared(found, m)
    weights[0] = sums
    return m


cdef Py_ssize_t _bucket_distinct(
        floating* rows, const floating* row_weights, Py_ssize_t n_rows, Py_ssize_t d,
        int* local, double** weights, Py_ssize_t max_distinct, Py_ssize_t* found,
) noexcept nogil:
    """_bucket_distinct_d, compiled separately for colours (d = 3)."""
    if d == 3:
        return _bucket_distinct_d(rows, row_weights, n_rows, 3, local, weights, max_distinct,
                                  found)
    return _bucket_distinct_d(rows, row_weights, n_rows, d, local, weights, max_distinct,
                              found)


cdef inline void _bucket_chunk_d(
        const floating* X, Py_ssize_t d,
        bint runs,                           # IN  whether rows in runs go to IN_RUN
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        uint8_t* bucket,                     # OUT (n,) rows [start, stop) written
        Py_ssize_t* counts,                  # OUT (ROW_BUCKETS,) this chunk's rows per bucket
) noexcept nogil:
    # Counted in COUNT_WAYS copies that consecutive rows rotate through: rows of the same
    # bucket close together would otherwise add to one counter one after the other.
    # (IN_RUN is counted too, in the last of its 256 slots, and left out.) No branch on
    # whether a row is in a run: that is as unpredictable as the pixels.
    cdef Py_ssize_t ways[COUNT_WAYS * 256]
    cdef Py_ssize_t i, b, f
    cdef bint same
    cdef const floating* previous
    for b in range(COUNT_WAYS * 256):
        ways[b] = 0
    for i in range(start, stop):
        same = runs and i > start
        previous = X + (i - 1 if i > start else i) * d  # (never the row before X)
        for f in range(d):
            same = same & (X[i * d + f] == previous[f])
        # The high half of the hash, scaled to [0, ROW_BUCKETS)
        b = IN_RUN if same else <Py_ssize_t>(
            (_row_hash(X + i * d, d) >> 32) * ROW_BUCKETS >> 32)
        bucket[i] = <uint8_t>b
        ways[(i & (COUNT_WAYS - 1)) * 256 + b] += 1
    for b in range(ROW_BUCKETS):
        counts[b] = ways[b] + ways[256 + b] + ways[2 * 256 + b] + ways[3 * 256 + b]


cdef void _bucket_chunk(const floating* X, Py_ssize_t d, bint runs, Py_ssize_t start,
                        Py_ssize_t stop, uint8_t* bucket, Py_ssize_t* counts) noexcept nogil:
    """_bucket_chunk_d, compiled separately for colours (d = 3)."""
    if d == 3:
        _bucket_chunk_d(X, 3, runs, start, stop, bucket, counts)
    else:
        _bucket_chunk_d(X, d, runs, start, stop, bucket, counts)


cdef inline void _scatter_chunk_d(
        const floating* X, const floating* sample_weight, Py_ssize_t d,
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        const uint8_t* bucket,               # IN  (n,) each row's bucket
        const Py_ssize_t* starts,            # IN  (256,) where this chunk's rows of each
                                             #     bucket go; for IN_RUN, a spare row
        floating* scattered,                 # OUT (m + 1, d) rows [start, stop) not in a run
                                             #     moved there (the others to the spare row)
        floating* scattered_weights,         # OUT (m + 1,) their weights, unless
                                             #     sample_weight is NULL
        int* run_lengths,                    # OUT (m + 1,) with sample_weight NULL: how many
                                             #     rows each moved row stands for
) noexcept nogil:
    cdef Py_ssize_t cursor[256]
    cdef Py_ssize_t i, f, pos, b, head = 0
    cdef bint in_run
    for i in range(256):
        cursor[i] = starts[i]
    # Branch-free, as _bucket_chunk_d: rows in runs are copied to the spare row, and add
    # one to their head's run length.
    for i in range(start, stop):
        b = bucket[i]
        in_run = b == IN_RUN
        pos = cursor[b]
        cursor[b] = pos + (not in_run)
        for f in range(d):
            scattered[pos * d + f] = X[i * d + f]
        if sample_weight != NULL:
            scattered_weights[pos] = sample_weight[i]
        else:
            head = head if in_run else pos
            run_lengths[pos] = 1
            run_lengths[head] += in_run


cdef void _scatter_chunk(const floating* X, const floating* sample_weight, Py_ssize_t d,
                         Py_ssize_t start, Py_ssize_t stop, const uint8_t* bucket,
                         const Py_ssize_t* starts, floating* scattered,
                         floating* scattered_weights, int* run_lengths) noexcept nogil:
    """_scatter_chunk_d, compiled separately for colours (d = 3)."""
    if d == 3:
        _scatter_chunk_d(X, sample_weight, 3, start, stop, bucket, starts, scattered,
                         scattered_weights, run_lengths)
    else:
        _scatter_chunk_d(X, sample_weight, d, start, stop, bucket, starts, scattered,
                         scattered_weights, run_lengths)


cdef Py_ssize_t _inverse_chunk(
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        uint8_t* bucket,                     # IN/OUT (n,) each row's bucket; out, for rows
                                             #     [start, stop): 1 for the first occurrence
                                             #     of a distinct row, else 0
        const Py_ssize_t* starts,            # IN  (256,) as for _scatter_chunk
        const int* local,                    # IN  (m + 1,) each moved row's index among its
                                             #     bucket's distinct rows (see
                                             #     _bucket_distinct_d)
        const Py_ssize_t* first,             # IN  (256,) index of each bucket's first
                                             #     distinct row among all
        int* inverse,                        # OUT (n,) rows [start, stop): the index of each
                                             #     among the distinct rows in bucket order
) noexcept nogil:
    """Returns how many first occurrences the chunk holds."""
    cdef Py_ssize_t cursor[256]
    cdef Py_ssize_t i, pos, b, n_first = 0
    cdef int index = 0, value
    cdef bint is_first
    for i in range(256):
        cursor[i] = starts[i]
    for i in range(start, stop):  # (branch-free: see _scatter_chunk_d)
        b = bucket[i]
        pos = cursor[b]
        cursor[b] = pos + (b != IN_RUN)
        value = local[pos]
        is_first = b != IN_RUN and value < 0
        value = value if value >= 0 else ~value
        index = index if b == IN_RUN else value + <int>first[b]
        inverse[i] = index
        bucket[i] = is_first
        n_first += is_first
    return n_first


cdef void _rank_first_chunk(
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        const uint8_t* is_first,             # IN  (n,) see _inverse_chunk
        const int* inverse,                  # IN  (n,) see _inverse_chunk
        Py_ssize_t rank,                     # IN  first occurrences before this chunk
        int* order,                          # OUT (m + 1,) for each distinct row in bucket
                                             #     order, its rank by first occurrence (the
                                             #     last entry is spare)
        Py_ssize_t spare,                    # IN  m
) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, stop):  # (branch-free: a fifth of a photo's rows are firsts)
        order[inverse[i] if is_first[i] else spare] = <int>rank
        rank += is_first[i]


# Rows on a grid (pixels: each column takes at most a few hundred distinct values). When
# the columns' values need at most GRID_BITS bits together, every row is a cell of the grid
# of its columns' values, numbered along a Z-order curve (the bits of the ranks of its
# values, interleaved), and the distinct rows are the cells set in a bitmap of up to
# 2**GRID_BITS bits (2 MiB): no row is moved, and none is hashed. A value is found by its
# bucket, VALUE_BUCKET_BITS of its bits (its sign, the exponent's lowest 4 and the
# mantissa's highest 11: values 1/2048 of their size apart, over 16 binades), which must
# hold one value each.
# Four passes over X, without a branch on the data but a rarely taken one (a value first
# seen by the census): (0) each column's values, by bucket (a table per column and
# thread); (A) each row's cell, written to ``inverse``, and its bit set (a bitmap per
# thread); (B) the bitmap's running counts, and the distinct rows decoded from its bits;
# (C) each row's index among them (its cell's rank among the bits set), and their counts.
# The census stops as soon as a thread has seen values off a grid (a bucket's second value,
# or more values than the grid takes). For float32 on AVX-512, the census and pass A find
# the values' buckets 16 at a time (fastkm_grid_census_f32, fastkm_grid_cells_f32).
# The distinct rows come out in Z-order of their values, whatever the thread count, so
# that similar rows stay together.

cdef enum:
    # At most this many bits a cell, and values in a column.
    GRID_BITS = 24
    GRID_COLUMN_VALUES = 4096
    VALUE_BUCKET_BITS = 16
    # A column's table: a slot per bucket, and one for 0.0.
    ZERO_SLOT = 1 << VALUE_BUCKET_BITS
    VALUE_SLOTS = ZERO_SLOT + 1
    # Columns at most (the census takes 8 * VALUE_SLOTS bytes a column and thread).
    GRID_MAX_FEATURES = 4
    # Bits of a cell decoded by one table lookup (two lookups for GRID_BITS).
    GRID_DECODE_BITS = 12
    # Words after a thread's bitmap (and counts after its counts) that rows in runs update
    # in turn (a power of two).
    SPARE_WORDS = 8


def grid_limits():
    """grid_distinct_rows's limits: ``(max_features, max_bits, max_column_values)``: the
    most columns, bits for the ranks of a row's values, and values in a column."""
    return GRID_MAX_FEATURES, GRID_BITS, GRID_COLUMN_VALUES


cdef extern from *:
    """
    /* The float32 passes of grid_distinct_rows with AVX-512 (the scalar loops serve
    float64 and the other builds: FASTKM_GRID_VECTORS is 0 there, and these are never
    called). Each value's slot in its column's table (_value_slot), most of a scalar pass's
    instructions, is computed for 16 values at once; the tables are then read by scalar
    loads (on Zen 4, a gather of 16 values from L1 took 6.0 ns, 16 loads 3.7 ns; the first
    version of this, with gathers, was slower than the scalar passes but for the census). X's
    values are taken as they lie, d columns interleaved: lane l of the q-th vector from a
    multiple of d holds a value of column (16 q + l) mod d, whose table starts at
    ``lane_offsets[16 * (q mod d) + l]``. */
    #if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) \\
        && defined(__AVX512DQ__)
    #define FASTKM_GRID_VECTORS 1
    #include <immintrin.h>
    /* X's values this far ahead are prefetched (the passes stalled on its loads: the
    census and cells passes of the photo took 10.4 and 16.0 ms on one thread, 9.3 and 12.9
    with 2 KiB ahead; 1 and 4 KiB did as well). */
    #define FASTKM_GRID_PREFETCH 512

    /* The table indices of 16 values (at most ``count``; the others get index 0) into
    ``indices``; returns their bits (-0.0 made 0.0 by adding 0, as _value_bits does) and
    sets ``zero`` to the lanes holding 0.0. */
    static inline __m512i fastkm_grid_indices16(const float* values, Py_ssize_t count,
                                                const uint32_t* lane_offsets,
                                                uint32_t zero_slot, uint32_t* indices,
                                                __mmask16* zero) {
        __mmask16 live = count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1u);
        fastkm_prefetch_near(values + FASTKM_GRID_PREFETCH);
        __m512i bits = _mm512_castps_si512(_mm512_add_ps(_mm512_maskz_loadu_ps(live, values),
                                                         _mm512_setzero_ps()));
        /* (bits >> 12) & 0x7FFF | (bits >> 16) & 0x8000: a bitwise select (0xE4) */
        __m512i slot = _mm512_ternarylogic_epi32(_mm512_srli_epi32(bits, 12),
                                                 _mm512_srli_epi32(bits, 16),
                                                 _mm512_set1_epi32(0x7FFF), 0xE4);
        *zero = _mm512_mask_cmpeq_epi32_mask(live, bits, _mm512_setzero_si512());
        slot = _mm512_mask_mov_epi32(slot, *zero, _mm512_set1_epi32((int)zero_slot));
        _mm512_storeu_si512(indices, _mm512_maskz_add_epi32(
            live, slot, _mm512_loadu_si512(lane_offsets)));
        return bits;
    }

    /* _census_chunk_d on X's flat values [first, stop) (first a multiple of d). Returns 1
    on a clash (``zero`` and ``column_values``, the values seen in each column's buckets,
    then unfinished). */
    static int fastkm_grid_census_f32(const float* values, Py_ssize_t d, Py_ssize_t first,
                                      Py_ssize_t stop, uint32_t* table,
                                      const uint32_t* lane_offsets, uint32_t zero_slot,
                                      uint64_t* zero, uint64_t* column_values) {
        uint32_t indices[16], bits_seen[16], differ;
        __mmask16 zeros[4] = {0, 0, 0, 0}, is_zero;
        Py_ssize_t j, p, lane, live;
        for (j = first, p = 0; j < stop; j += 16, p = p + 1 == d ? 0 : p + 1) {
            _mm512_storeu_si512(bits_seen, fastkm_grid_indices16(
                values + j, stop - j, lane_offsets + 16 * p, zero_slot, indices, &is_zero));
            live = stop - j < 16 ? stop - j : 16;
            differ = 0;
            for (lane = 0; lane < live; lane++)
                differ |= table[indices[lane]] ^ bits_seen[lane];
            zeros[p] |= is_zero;
            if (differ) {  /* rare: a value first seen, or a clash */
                for (lane = 0; lane < live; lane++) {
                    if (table[indices[lane]] == bits_seen[lane])
                        continue;
                    if (table[indices[lane]] != 0)
                        return 1;
                    table[indices[lane]] = bits_seen[lane];
                    column_values[(p * 16 + lane) % d] += 1;
                }
            }
        }
        for (p = 0; p < d; p++)
            for (lane = 0; lane < 16; lane++)
                if ((zeros[p] >> lane) & 1)
                    zero[(p * 16 + lane) % d] = 1;
        return 0;
    }

    /* Each row's cell (see _grid_cells_chunk_d) for ``count`` rows from ``start`` (at most
    FASTKM_GRID_BLOCK_ROWS). */
    #define FASTKM_GRID_BLOCK_ROWS 64
    static inline void fastkm_grid_cells_f32(const float* X, Py_ssize_t d, Py_ssize_t start,
                                             Py_ssize_t count, const uint32_t* codes,
                                             const uint32_t* lane_offsets,
                                             uint32_t zero_slot, int* cells,
                                             const uint64_t* bitmap) {
        uint32_t indices[FASTKM_GRID_BLOCK_ROWS * 4];
        __mmask16 is_zero;
        Py_ssize_t j, p, r, f;
        for (j = 0, p = 0; j < count * d; j += 16, p = p + 1 == d ? 0 : p + 1)
            fastkm_grid_indices16(X + start * d + j, count * d - j, lane_offsets + 16 * p,
                                  zero_slot, indices + j, &is_zero);
        for (r = 0; r < count; r++) {
            uint32_t cell = 0;
            for (f = 0; f < d; f++)
                cell |= codes[indices[r * d + f]];
            cells[start + r] = (int)cell;
            fastkm_prefetch_write(bitmap + (cell >> 6));
        }
    }
    #else
    #define FASTKM_GRID_VECTORS 0
    #define FASTKM_GRID_BLOCK_ROWS 64
    #define fastkm_grid_census_f32(X, d, first, stop, table, lane_offsets, zero_slot, zero, \\
                                   values) (abort(), 0)
    #define fastkm_grid_cells_f32(X, d, start, count, codes, lane_offsets, zero_slot, cells, \\
                                  bitmap) abort()
    #endif
    """
    int FASTKM_GRID_VECTORS
    int GRID_BLOCK_ROWS "FASTKM_GRID_BLOCK_ROWS"
    int fastkm_grid_census_f32(const float* values, Py_ssize_t d, Py_ssize_t first,
                               Py_ssize_t stop, uint32_t* table, const uint32_t* lane_offsets,
                               uint32_t zero_slot, uint64_t* zero,
                               uint64_t* values) noexcept nogil
    void fastkm_grid_cells_f32(const float* X, Py_ssize_t d, Py_ssize_t start,
                               Py_ssize_t count, const uint32_t* codes,
                               const uint32_t* lane_offsets, uint32_t zero_slot,
                               int* cells, const uint64_t* bitmap) noexcept nogil



cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define fastkm_popcount64(v) ((Py_ssize_t)__builtin_popcountll(v))
    #else
    static Py_ssize_t fastkm_popcount64(uint64_t v) {
        v = v - ((v >> 1) & 0x5555555555555555ULL);
        v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
        v = (v + (v >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
        return (Py_ssize_t)((v * 0x0101010101010101ULL) >> 56);
    }
    #endif
    """
    Py_ssize_t fastkm_popcount64(uint64_t v) noexcept nogil


cdef inline Py_ssize_t _value_bits_needed(Py_ssize_t count) noexcept nogil:
    """Bits of the rank of one of ``count`` values."""
    cdef Py_ssize_t b = 0
    while (<Py_ssize_t>1 << b) < count:
        b += 1
    return b


cdef inline Py_ssize_t _value_slot(uint64_t bits, bint single) noexcept nogil:
    """The slot of a value's bits in a column's table: ZERO_SLOT for 0.0, else its bucket:
    its sign, the exponent's lowest 4 bits, then the mantissa's highest 11 (float32: bits
    31 and 12 to 26; float64: 63 and 41 to 55). (0.0 in a bucket would share it with 2.0.)
    """
    cdef Py_ssize_t bucket
    if single:
        bucket = <Py_ssize_t>(((bits >> 12) & 0x7FFF) | ((bits >> 16) & 0x8000))
    else:
        bucket = <Py_ssize_t>(((bits >> 41) & 0x7FFF) | ((bits >> 48) & 0x8000))
    return bucket if bits != 0 else ZERO_SLOT


cdef inline void _grid_lane_offsets(
        Py_ssize_t d,
        uint32_t* lane_offsets,              # OUT (16 d,) see fastkm_grid_census_f32
) noexcept nogil:
    cdef Py_ssize_t lane
    for lane in range(16 * d):
        lane_offsets[lane] = <uint32_t>((lane % d) * VALUE_SLOTS)


cdef inline void _census_chunk_d(
        const floating* X, Py_ssize_t d,     # IN  (n, d)
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        void* table,                         # IN/OUT (d, VALUE_SLOTS) the bits of the value
                                             #     seen in each bucket (0: none; ZERO_SLOT's
                                             #     stays 0), uint32 for float32, else uint64
        uint64_t* zero,                      # IN/OUT (d,) nonzero where a 0.0 was seen
        uint64_t* column_values,             # IN/OUT (d,) values seen in the buckets
        uint64_t* clash,                     # IN/OUT nonzero once two values of a column
                                             #     were seen in one bucket
) noexcept nogil:
    cdef Py_ssize_t i, f, slot
    cdef uint64_t bits, entry, clashed = clash[0]
    cdef uint64_t zero_seen[MAX_UNROLLED_FEATURES]  # (GRID_MAX_FEATURES columns at most)
    cdef uint32_t* table32 = <uint32_t*>table
    cdef uint64_t* table64 = <uint64_t*>table
    cdef uint32_t lane_offsets[16 * GRID_MAX_FEATURES]
    if floating is float:
        if FASTKM_GRID_VECTORS:
            _grid_lane_offsets(d, lane_offsets)
            clash[0] = clashed | <uint64_t>fastkm_grid_census_f32(
                X, d, start * d, stop * d, table32, lane_offsets, ZERO_SLOT, zero,
                column_values)
            return
    for f in range(d):
        zero_seen[f] = zero[f]
    for i in range(start, stop):
        for f in range(d):
            bits = _value_bits(X[i * d + f])
            slot = f * VALUE_SLOTS + _value_slot(bits, floating is float)
            entry = table32[slot] if floating is float else table64[slot]
            if entry != bits:  # (rare: a value first seen, or a clash)
                clashed = clashed | (entry != 0)
                column_values[f] += entry == 0
                if floating is float:
                    table32[slot] = <uint32_t>(entry | bits)  # (bits where it was empty)
                else:
                    table64[slot] = entry | bits
            zero_seen[f] = zero_seen[f] | (bits == 0)
    for f in range(d):
        zero[f] = zero_seen[f]
    clash[0] = clashed


cdef void _census_chunk(const floating* X, Py_ssize_t d, Py_ssize_t start, Py_ssize_t stop,
                        void* table, uint64_t* zero, uint64_t* column_values,
                        uint64_t* off_grid) noexcept nogil:
    """_census_chunk_d, compiled separately for colours (d = 3); ``off_grid`` is also set
    once the thread has seen more values than a grid takes (the counts of all threads are
    at least as high)."""
    cdef Py_ssize_t f, count, bits = 0, most = 0
    if d == 3:
        _census_chunk_d(X, 3, start, stop, table, zero, column_values, off_grid)
    else:
        _census_chunk_d(X, d, start, stop, table, zero, column_values, off_grid)
    for f in range(d):
        count = <Py_ssize_t>column_values[f] + (zero[f] != 0)
        bits += _value_bits_needed(count)
        most = max(most, count)
    off_grid[0] |= bits > GRID_BITS or most > GRID_COLUMN_VALUES


cdef inline void _grid_cells_chunk_d(
        const floating* X, Py_ssize_t d,     # IN  (n, d)
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        const uint32_t* codes,               # IN  (d, VALUE_SLOTS) the cell bits of
                                             #     the value in each bucket
        int* cells,                          # OUT (n,) rows [start, stop): each row's cell
        uint64_t* bitmap,                    # IN/OUT (n_words + SPARE_WORDS,) the thread's:
                                             #     bit c set for each cell c seen
        Py_ssize_t n_words,
) noexcept nogil:
    # Consecutive rows often fall in one word of the bitmap (runs of equal pixels, and of
    # similar ones), and or-ing each into it would chain each row's update to the
    # previous row's store. So a word's bits are gathered in a register and or-ed into it
    # when the rows leave it; meanwhile, each row or-s into one of SPARE_WORDS words past
    # the bitmap's end in turn (no branch: which word is unpredictable).
    # The cells of a block of rows are found (and their bitmap words prefetched) while
    # the block before takes its turn at the bitmap, whose 2 MiB per thread overflow L2.
    cdef Py_ssize_t block = start, block_stop, done = start, i, f, word, current = n_words
    cdef Py_ssize_t same
    cdef uint32_t cell
    cdef uint64_t gathered = 0
    cdef uint32_t lane_offsets[16 * GRID_MAX_FEATURES]
    if floating is float and FASTKM_GRID_VECTORS:
        _grid_lane_offsets(d, lane_offsets)
    while done < stop:
        block_stop = min(stop, block + GRID_BLOCK_ROWS)
        if floating is float and FASTKM_GRID_VECTORS:
            fastkm_grid_cells_f32(X, d, block, block_stop - block, codes, lane_offsets,
                                  ZERO_SLOT, cells, bitmap)
        else:
            for i in range(block, block_stop):
                cell = 0
                for f in range(d):
                    cell = cell | codes[f * VALUE_SLOTS + _value_slot(
                        _value_bits(X[i * d + f]), floating is float)]
                cells[i] = <int>cell
                fastkm_prefetch_write(&bitmap[cell >> 6])
        for i in range(done, block):
            cell = <uint32_t>cells[i]
            word = cell >> 6
            same = word == current  # (arithmetic: gcc made a branch of the conditionals)
            bitmap[current + same * (n_words + (i & (SPARE_WORDS - 1)) - current)] |= gathered
            gathered = ((gathered & (<uint64_t>0 - <uint64_t>same))
                        | (<uint64_t>1 << (cell & 63)))
            current = word
        done = block
        block = block_stop
    bitmap[current] |= gathered


cdef void _grid_cells_chunk(const floating* X, Py_ssize_t d, Py_ssize_t start,
                            Py_ssize_t stop, const uint32_t* codes, int* cells,
                            uint64_t* bitmap, Py_ssize_t n_words) noexcept nogil:
    """_grid_cells_chunk_d, compiled separately for colours (d = 3)."""
    if d == 3:
        _grid_cells_chunk_d(X, 3, start, stop, codes, cells, bitmap, n_words)
    else:
        _grid_cells_chunk_d(X, d, start, stop, codes, cells, bitmap, n_words)


cdef void _grid_rows_chunk(
        const uint64_t* bitmap,              # IN  (n_words,) the cells seen
        Py_ssize_t first_word, Py_ssize_t stop_word,  # IN  this chunk's words
        Py_ssize_t rank,                     # IN  cells set before first_word
        Py_ssize_t d,
        const uint16_t* decode_low,          # IN  (d, 2**GRID_DECODE_BITS) rank bits of
        const uint16_t* decode_high,         #     each column in a cell's low (high) bits
        const floating* values,              # IN  (d, GRID_COLUMN_VALUES) each column's
                                             #     values, by rank
        uint32_t* word_ranks,                # OUT (n_words,) cells set before each word
        floating* rows,                      # OUT (m, d) the distinct rows of this chunk's
                                             #     cells, from row ``rank`` on
) noexcept nogil:
    cdef Py_ssize_t w, f
    cdef uint64_t word
    cdef uint32_t cell, low, high
    for w in range(first_word, stop_word):
        word_ranks[w] = <uint32_t>rank
        word = bitmap[w]
        while word:
            cell = <uint32_t>(w * 64 + fastkm_popcount64((word & (~word + 1)) - 1))
            word = word & (word - 1)
            low = cell & ((1 << GRID_DECODE_BITS) - 1)
            high = cell >> GRID_DECODE_BITS
            for f in range(d):
                rows[rank * d + f] = values[f * GRID_COLUMN_VALUES
                                            + (decode_low[f << GRID_DECODE_BITS | low]
                                               | decode_high[f << GRID_DECODE_BITS | high])]
            rank += 1


cdef void _grid_ranks_chunk(
        Py_ssize_t start, Py_ssize_t stop,   # IN  rows of this chunk
        const uint64_t* bitmap,              # IN  the cells seen
        const uint32_t* word_ranks,          # IN  cells set before each word of the bitmap
        int* inverse,                        # IN/OUT (n,) rows [start, stop): in, each row's
                                             #     cell; out, its index among the distinct rows
        int* counts,                         # IN/OUT (m + SPARE_WORDS,) the thread's rows of
                                             #     each distinct row
        Py_ssize_t m,
) noexcept nogil:
    # The indices of a block of rows are found (and their counts prefetched: m of them
    # overflow L2) while the block before is counted. Rows in runs are counted in a
    # register, and added when the run ends (meanwhile, 0 is added to a spare count in
    # turn: see _grid_cells_chunk_d).
    cdef Py_ssize_t block = start, block_stop, done = start, i, same, current = m
    cdef uint32_t cell, index, run = 0
    while done < stop:
        block_stop = min(stop, block + GRID_BLOCK_ROWS)
        for i in range(block, block_stop):
            cell = <uint32_t>inverse[i]
            index = word_ranks[cell >> 6] + <uint32_t>fastkm_popcount64(
                bitmap[cell >> 6] & ((<uint64_t>1 << (cell & 63)) - 1))
            inverse[i] = <int>index
            fastkm_prefetch_write(&counts[index])
        for i in range(done, block):
            index = <uint32_t>inverse[i]
            same = index == current  # (arithmetic, as in _grid_cells_chunk_d)
            counts[current + same * (m + (i & (SPARE_WORDS - 1)) - current)] += <int>(
                run * (1 - same))
            run = run * same + 1
            current = index
        done = block
        block = block_stop
    counts[current] += <int>run


def grid_distinct_rows(
        const floating[:, ::1] X,            # IN  (n, d)
        Py_ssize_t max_distinct,             # IN  give up beyond this many distinct rows
        int[::1] inverse,                    # OUT (n,) the index of each row of X among the
                                             #     distinct rows
        int n_threads=1,
):
    """distinct_rows with unit weights, for rows on a grid (see above): X's distinct rows
    and how many times each occurs, with the index of each row among them.

    Returns ``(rows, counts)``: the (m, d) distinct rows, in X's dtype, in Z-order of the
    ranks of their values (whatever ``n_threads``), and their (m,) counts, in X's dtype
    (the weights a fit takes; float32 rounds counts above 2**24).
    Or None when there are more than ``max_distinct`` of them, or False when X is not on a
    grid: a value not finite, more than GRID_MAX_FEATURES columns, more than
    GRID_COLUMN_VALUES values in a column, more than GRID_BITS bits for the ranks of a row's
    values, or two values of a column in one bucket (``inverse`` is then left as it was;
    with None, it is not). Extra memory while it runs: 2.75 MiB a thread (float32; 3.5 MiB
    for float64, at d = 3), and up to ``n / m`` arrays of m int32 counts (no more than
    ``inverse``), besides the result.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_chunks, chunk_rows, c, f, level, rank
    if inverse.shape[0] != n:
        raise ValueError("grid_distinct_rows: inverse must have one entry per row of X")
    if d == 0:
        raise ValueError("grid_distinct_rows: X must have at least one column")
    if d > GRID_MAX_FEATURES or n >= (<Py_ssize_t>1 << 31) - 1:  # (int32 counts, cells)
        return False
    dtype = np.float32 if floating is float else np.float64
    if n == 0:
        return np.empty((0, d), dtype=dtype), np.empty(0, dtype=dtype)
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n * d * 4)
    bits_dtype = np.uint32 if floating is float else np.uint64
    # 0. Each column's values, by bucket.
    census_array = _zeros((n_threads, d, VALUE_SLOTS), bits_dtype)
    zero_array = np.zeros((n_threads, d), dtype=np.uint64)
    column_values_array = np.zeros((n_threads, d), dtype=np.uint64)
    off_grid_array = np.zeros(n_threads, dtype=np.uint64)
    cdef uint8_t[::1] census_bytes = census_array.reshape(-1).view(np.uint8)
    cdef uint8_t* census = &census_bytes[0]
    cdef Py_ssize_t table_bytes = d * VALUE_SLOTS * census_array.itemsize
    cdef uint64_t[:, ::1] zero = zero_array
    cdef uint64_t[:, ::1] column_values = column_values_array
    cdef uint64_t[::1] off_grid = off_grid_array
    cdef Py_ssize_t give_up = 0  # (shared: rows off a grid show it in their first chunks)
    # The passes over the rows take their chunks as they come: an image's rows differ in
    # cost (runs of equal pixels, in the sky; few in the foliage), and with static halves
    # one thread waited for the other (photo 2560x1708: from 1 to 2 threads, 41 to 30 ms
    # static, 41 to 23 ms dynamic). The results do not depend on it: the threads' tables,
    # bitmaps and counts merge by max, or and integer sums.
    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
        if not fastkm_read_shared(&give_up):
            _census_chunk(&X[0, 0], d, c * chunk_rows, min(n, (c + 1) * chunk_rows),
                          census + threadid() * table_bytes, &zero[threadid(), 0],
                          &column_values[threadid(), 0], &off_grid[threadid()])
            if off_grid[threadid()]:
                fastkm_add_shared(&give_up, 1)
    if give_up:
        return False
    # The threads' tables merged (two values in a bucket: a clash).
    table = census_array.max(axis=0)
    if ((census_array != table) & (census_array != 0)).any():
        return False
    has_zero = zero_array.any(axis=0)
    columns, column_slots = [], []  # each column's values in order, and their slots
    for f in range(d):
        slots = np.flatnonzero(table[f])
        bits = table[f][slots].view(dtype)
        # NaN equals nothing (distinct_rows keeps such rows apart); and what the grid
        # takes is finite, so that KMeans.fit need not check X's values again.
        if not np.isfinite(bits).all():
            return False
        if has_zero[f]:
            slots = np.append(slots, ZERO_SLOT)
            bits = np.append(bits, dtype(0))
        order = np.argsort(bits)
        columns.append(bits[order])
        column_slots.append(slots[order])
    widths = [_value_bits_needed(len(column)) for column in columns]
    if sum(widths) > GRID_BITS or max(len(column) for column in columns) > GRID_COLUMN_VALUES:
        return False
    # The cell's bits from the top: the highest rank bit of each column in turn, then the
    # next; each value's cell bits (codes), and the tables that decode them.
    cdef Py_ssize_t cell_bits = sum(widths), next_bit = cell_bits
    codes_array = np.zeros((d, VALUE_SLOTS), dtype=np.uint32)
    values_array = np.zeros((d, GRID_COLUMN_VALUES), dtype=dtype)
    decode_array = np.zeros((2, d, 1 << GRID_DECODE_BITS), dtype=np.uint16)
    fragment = np.arange(1 << GRID_DECODE_BITS, dtype=np.int64)
    spreads = [np.zeros(len(column), dtype=np.int64) for column in columns]
    for level in range(max(widths) - 1, -1, -1):
        for f in range(d):
            if widths[f] > level:
                next_bit -= 1
                spreads[f] |= ((np.arange(len(columns[f])) >> level) & 1) << next_bit
                half = int(next_bit >= GRID_DECODE_BITS)
                decode_array[half, f] |= (((fragment >> (next_bit - GRID_DECODE_BITS * half))
                                           & 1) << level).astype(np.uint16)
    for f in range(d):
        values_array[f, :len(columns[f])] = columns[f]
        codes_array[f, column_slots[f]] = spreads[f]
    cdef const uint32_t[:, ::1] codes = codes_array
    # A. Each row's cell, and the bitmaps of the cells seen.
    cdef Py_ssize_t n_words = max(1, (<Py_ssize_t>1 << cell_bits) // 64)
    bitmaps_array = _zeros((n_threads, n_words + SPARE_WORDS), np.uint64)
    cdef uint64_t[:, ::1] bitmaps = bitmaps_array
    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
        _grid_cells_chunk(&X[0, 0], d, c * chunk_rows, min(n, (c + 1) * chunk_rows),
                          &codes[0, 0], &inverse[0], &bitmaps[threadid(), 0], n_words)
    # B. The distinct rows, in the order of their cells.
    cdef uint64_t* bitmap = &bitmaps[0, 0]  # (the threads' bitmaps merged into the first)
    cdef Py_ssize_t n_word_chunks, word_chunk, w, t
    _row_chunks(n_words, &n_word_chunks, &word_chunk)
    word_firsts_array = np.zeros(n_word_chunks + 1, dtype=np.intp)
    cdef Py_ssize_t[::1] word_firsts = word_firsts_array
    for c in prange(n_word_chunks, nogil=True, schedule="static", num_threads=n_threads):
        for w in range(c * word_chunk, min(n_words, (c + 1) * word_chunk)):
            for t in range(1, n_threads):
                bitmap[w] |= bitmaps[t, w]
            word_firsts[c + 1] += fastkm_popcount64(bitmap[w])
    np.cumsum(word_firsts_array, out=word_firsts_array)
    cdef Py_ssize_t m = word_firsts[n_word_chunks]
    if m > max_distinct:
        return None
    rows_array = _empty((m, d), dtype)
    word_ranks_array = _empty(n_words, np.uint32)
    cdef floating[:, ::1] rows = rows_array
    cdef uint32_t[::1] word_ranks = word_ranks_array
    cdef const uint16_t[:, :, ::1] decode = decode_array
    cdef const floating[:, ::1] values = values_array
    cdef floating* rows_ptr = &rows[0, 0] if m else NULL
    for c in prange(n_word_chunks, nogil=True, schedule="dynamic", num_threads=n_threads):
        _grid_rows_chunk(&bitmap[0], c * word_chunk, min(n_words, (c + 1) * word_chunk),
                         word_firsts[c], d, &decode[0, 0, 0], &decode[1, 0, 0],
                         &values[0, 0], &word_ranks[0], rows_ptr)
    # C. Each row's index among the distinct rows, and their counts (one array a thread:
    #    at most n / m of them, so that they take no more memory than ``inverse``).
    cdef int count_threads = max(1, min(n_threads, n // max(1, m)))
    first_counts_array = _zeros(m + SPARE_WORDS, np.int32)
    other_counts_array = _zeros((count_threads - 1, m + SPARE_WORDS), np.int32)
    cdef int[::1] first_counts = first_counts_array
    cdef int[:, ::1] other_counts = other_counts_array
    for c in prange(n_chunks, nogil=True, schedule="dynamic", num_threads=count_threads):
        _grid_ranks_chunk(c * chunk_rows, min(n, (c + 1) * chunk_rows), &bitmap[0],
                          &word_ranks[0], &inverse[0],
                          &first_counts[0] if threadid() == 0
                          else &other_counts[threadid() - 1, 0], m)
    # The counts summed over the threads, as X's dtype: float32 written over the first
    #    thread's int32 (each count read before it is written; no fresh memory).
    if floating is float:
        counts_total_array = first_counts_array[:m].view(np.float32)
    else:
        counts_total_array = _empty(m, dtype)
    cdef floating[::1] counts_total = counts_total_array
    cdef Py_ssize_t j, total
    cdef int total_threads = _threads_for(max(1, m), n_threads, m * count_threads)
    for j in prange(m, nogil=True, schedule="static", num_threads=total_threads):
        total = first_counts[j]
        for t in range(1, count_threads):
            total = total + other_counts[t - 1, j]
        counts_total[j] = <floating>total
    return rows_array, counts_total_array


def distinct_rows(
        const floating[:, ::1] X,            # IN  (n, d)
        sample_weight,                       # IN  (n,) X's dtype, or None for unit weights
        Py_ssize_t max_distinct,             # IN  give up beyond this many distinct rows
        int[::1] inverse,                    # OUT (n,) the index of each row of X among the
                                             #     distinct rows
        int n_threads=1,
):
    """The distinct rows of X, their summed weights and the index of each row among them.

    Returns ``(rows, weights)``: the (m, d) distinct rows, in X's dtype, and their (m,)
    summed weights, in float64. Or None when there are more than ``max_distinct`` of them
    (``inverse`` is then left as it was): the buckets stop as soon as the ones done and
    the one running hold more, so that data with few repeats pay for part of the work only.
    Rows are equal when their values compare equal. The distinct rows are in the order of
    their first occurrence in X (whatever ``n_threads``). Extra memory
    while it runs: a copy of X (and of sample_weight), n bytes and n int32, besides
    ``inverse``; with unit weights, less: the rows equal to the one before them are not
    copied.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef const floating[::1] w
    cdef const floating* w_ptr = NULL
    if sample_weight is not None:
        w = sample_weight
        if w.shape[0] != n:
            raise ValueError("distinct_rows: sample_weight must have one entry per row of X")
        if n:
            w_ptr = &w[0]
    if inverse.shape[0] != n:
        raise ValueError("distinct_rows: inverse must have one entry per row of X")
    if n >= (<Py_ssize_t>1 << 31) - 1:
        raise ValueError("distinct_rows: X must have fewer than 2**31 - 1 rows")
    dtype = np.float32 if floating is float else np.float64
    if d == 0:
        raise ValueError("distinct_rows: X must have at least one column")
    if n == 0:
        return np.empty((0, d), dtype=dtype), np.empty(0)
    cdef Py_ssize_t n_chunks, chunk_rows, c, b, j, f, n_distinct
    _row_chunks(n, &n_chunks, &chunk_rows)
    n_threads = _threads_for(n_chunks, n_threads, n * d)
    bucket_array = _empty(n, np.uint8)
    counts_array = np.zeros((n_chunks, ROW_BUCKETS), dtype=np.intp)
    cdef uint8_t[::1] bucket = bucket_array
    cdef Py_ssize_t[:, ::1] counts = counts_array
    cdef bint runs = w_ptr == NULL
    # 1. Each row's bucket, and the buckets' sizes in each chunk.
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        _bucket_chunk(&X[0, 0], d, runs, c * chunk_rows, min(n, (c + 1) * chunk_rows),
                      &bucket[0], &counts[c, 0])
    # 2. The rows not in runs, bucket after bucket, each bucket's in X's order: chunk c's
    #    rows of bucket b go from position starts[c, b] on; starts[c, IN_RUN] is the spare
    #    row after them.
    sizes_array = counts_array.sum(axis=0)
    bucket_first_array = np.concatenate([[0], np.cumsum(sizes_array)])
    cdef Py_ssize_t n_moved = bucket_first_array[ROW_BUCKETS]
    starts_array = np.full((n_chunks, 256), n_moved, dtype=np.intp)
    starts_array[:, :ROW_BUCKETS] = (bucket_first_array[:ROW_BUCKETS]
                                     + np.cumsum(counts_array, axis=0) - counts_array)
    cdef Py_ssize_t[:, ::1] starts = starts_array
    cdef Py_ssize_t[::1] sizes = sizes_array
    cdef Py_ssize_t[::1] bucket_first = bucket_first_array
    scattered_array = _empty((n_moved + 1, d), dtype)
    scattered_weights_array = _empty(n_moved + 1 if w_ptr != NULL else 1, dtype)
    # Each moved row's run length (unit weights), then its index among its bucket's
    # distinct rows.
    local_array = _zeros(n_moved + 1, np.int32)
    cdef floating[:, ::1] scattered_view = scattered_array
    cdef floating[::1] scattered_weights_view = scattered_weights_array
    cdef floating* scattered = &scattered_view[0, 0]
    cdef floating* scattered_weights = &scattered_weights_view[0]
    cdef int[::1] local = local_array
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        _scatter_chunk(&X[0, 0], w_ptr, d, c * chunk_rows, min(n, (c + 1) * chunk_rows),
                       &bucket[0], &starts[c, 0], scattered, scattered_weights, &local[0])
    # 3. Each bucket's distinct rows, and the weights of each in a buffer of its own.
    distinct_array = np.zeros(ROW_BUCKETS, dtype=np.intp)
    weight_buffers = np.zeros(ROW_BUCKETS, dtype=np.uintp)
    cdef Py_ssize_t[::1] distinct = distinct_array
    cdef size_t[::1] weight_buffer_view = weight_buffers
    cdef double** bucket_weights = <double**>&weight_buffer_view[0]
    cdef Py_ssize_t found = 0
    cdef Py_ssize_t[::1] first, rank
    cdef int[::1] order
    chunk_firsts_array = np.zeros(n_chunks, dtype=np.intp)
    cdef Py_ssize_t[::1] chunk_firsts = chunk_firsts_array
    cdef floating[:, ::1] rows
    cdef double[::1] weights
    try:
        for b in prange(ROW_BUCKETS, nogil=True, schedule="dynamic",
                        num_threads=min(n_threads, ROW_BUCKETS)):
            distinct[b] = _bucket_distinct(
                scattered + bucket_first[b] * d,
                NULL if w_ptr == NULL else scattered_weights + bucket_first[b],
                sizes[b], d, &local[0] + bucket_first[b], &bucket_weights[b], max_distinct,
                &found)
        if (distinct_array == -1).any():
            raise MemoryError()
        if (distinct_array == -2).any():
            return None
        # 4. Each row's index among the distinct rows in bucket order, and which rows are
        #    the first occurrence of one.
        first_array = np.zeros(256, dtype=np.intp)
        first_array[1:ROW_BUCKETS] = np.cumsum(distinct_array)[:ROW_BUCKETS - 1]
        n_distinct = distinct_array.sum()
        first = first_array
        for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
            chunk_firsts[c] = _inverse_chunk(
                c * chunk_rows, min(n, (c + 1) * chunk_rows), &bucket[0], &starts[c, 0],
                &local[0], &first[0], &inverse[0])
        # 5. The distinct rows in the order of their first occurrence in X, rather than by
        #    hash bucket: an order that depends on X alone, in which neighbouring pixels,
        #    often of similar colours, stay together (Exponion to convergence took 1.05x
        #    longer on the photo's distinct rows in random order, k=256).
        rank_array = np.concatenate([[0], np.cumsum(chunk_firsts_array)[:n_chunks - 1]])
        order_array = _empty(n_distinct + 1, np.int32)
        rank = rank_array
        order = order_array
        for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
            _rank_first_chunk(c * chunk_rows, min(n, (c + 1) * chunk_rows), &bucket[0],
                              &inverse[0], rank[c], &order[0], n_distinct)
        rows_array = _empty((n_distinct, d), dtype)
        weights_array = _empty(n_distinct, np.float64)
        rows = rows_array
        weights = weights_array
        for b in prange(ROW_BUCKETS, nogil=True, schedule="static",
                        num_threads=min(n_threads, ROW_BUCKETS)):
            for j in range(distinct[b]):
                for f in range(d):
                    rows[order[first[b] + j], f] = scattered[(bucket_first[b] + j) * d + f]
                weights[order[first[b] + j]] = bucket_weights[b][j]
    finally:
        for b in range(ROW_BUCKETS):
            free(bucket_weights[b])
    take_labels(order_array, inverse, inverse, n_threads)  # (in place: each read first)
    return rows_array, weights_array
