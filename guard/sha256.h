/* SHA-256 (FIPS 180-4) for the audit log's hot path, written for guard._core.
 *
 * Two block functions behind one pointer: an x86 SHA-NI version compiled with a
 * function-level target attribute (so nothing else in the module needs -msha) and a
 * portable C version, used on other CPUs and architectures and selectable for tests.
 * On top of them: an incremental context (init/update/final) and the RFC 9162 interior
 * node hash SHA-256(0x01 || left || right) built directly as two blocks.
 *
 * Header-only (static functions): included once, by the Cython module.
 */
#ifndef GUARD_SHA256_H
#define GUARD_SHA256_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GSHA_HAVE_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define GSHA_HAVE_X86 0
#endif

/* Round constants: the first 32 bits of the fractional parts of the cube roots of the
 * first 64 primes (FIPS 180-4 4.2.2), generated with exact integer cube roots. */
static const uint32_t gsha_K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u,
    0x923f82a4u, 0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u,
    0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u,
    0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u,
    0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u,
    0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au,
    0x5b9cca4fu, 0x682e6ff3u, 0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u,
    0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

/* Initial hash value: fractional parts of the square roots of the first 8 primes. */
static const uint32_t gsha_IV[8] = {
    0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
    0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u,
};

typedef void (*gsha_blocks_fn)(uint32_t st[8], const unsigned char *p, size_t nblocks);

/* ---- portable block function ------------------------------------------------------ */

#define GSHA_ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static inline uint32_t gsha_load_be(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void gsha_store_be(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Rounds unrolled eight at a time with the variables renamed instead of shifted, and
 * the message schedule kept in a 16-word ring: about twice as fast as the plain loop. */
#define GSHA_S0(x) (GSHA_ROR(x, 2) ^ GSHA_ROR(x, 13) ^ GSHA_ROR(x, 22))
#define GSHA_S1(x) (GSHA_ROR(x, 6) ^ GSHA_ROR(x, 11) ^ GSHA_ROR(x, 25))
#define GSHA_s0(x) (GSHA_ROR(x, 7) ^ GSHA_ROR(x, 18) ^ ((x) >> 3))
#define GSHA_s1(x) (GSHA_ROR(x, 17) ^ GSHA_ROR(x, 19) ^ ((x) >> 10))
#define GSHA_W(t) (w[(t) & 15] += GSHA_s1(w[((t) - 2) & 15]) + w[((t) - 7) & 15] + \
                   GSHA_s0(w[((t) - 15) & 15]))
#define GSHA_R(a, b, c, d, e, f, g, h, t, wt)                                        \
    do {                                                                             \
        uint32_t t1_ = h + GSHA_S1(e) + (g ^ (e & (f ^ g))) + gsha_K[t] + (wt);     \
        d += t1_;                                                                    \
        h = t1_ + GSHA_S0(a) + ((a & b) | (c & (a | b)));                            \
    } while (0)
#define GSHA_R8(t, W)                                     \
    GSHA_R(a, b, c, d, e, f, g, h, (t) + 0, W((t) + 0)); \
    GSHA_R(h, a, b, c, d, e, f, g, (t) + 1, W((t) + 1)); \
    GSHA_R(g, h, a, b, c, d, e, f, (t) + 2, W((t) + 2)); \
    GSHA_R(f, g, h, a, b, c, d, e, (t) + 3, W((t) + 3)); \
    GSHA_R(e, f, g, h, a, b, c, d, (t) + 4, W((t) + 4)); \
    GSHA_R(d, e, f, g, h, a, b, c, (t) + 5, W((t) + 5)); \
    GSHA_R(c, d, e, f, g, h, a, b, (t) + 6, W((t) + 6)); \
    GSHA_R(b, c, d, e, f, g, h, a, (t) + 7, W((t) + 7))
#define GSHA_W0(t) (w[t])

static void gsha_blocks_portable(uint32_t st[8], const unsigned char *p, size_t nblocks)
{
    uint32_t w[16];
    while (nblocks--) {
        int t;
        uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
        uint32_t e = st[4], f = st[5], g = st[6], h = st[7];
        for (t = 0; t < 16; t++)
            w[t] = gsha_load_be(p + 4 * t);
        GSHA_R8(0, GSHA_W0);
        GSHA_R8(8, GSHA_W0);
        for (t = 16; t < 64; t += 16) {
            GSHA_R8(t, GSHA_W);
            GSHA_R8(t + 8, GSHA_W);
        }
        st[0] += a; st[1] += b; st[2] += c; st[3] += d;
        st[4] += e; st[5] += f; st[6] += g; st[7] += h;
        p += 64;
    }
}

/* ---- x86 SHA extensions ------------------------------------------------------------ */

#if GSHA_HAVE_X86
/* The SHA-NI round instruction works on the state split as (A,B,E,F) and (C,D,G,H),
 * highest lane first; each sha256rnds2 does two rounds and its result becomes the
 * new ABEF while the old ABEF is the new CDGH, so the two registers swap roles
 * every call. The message schedule for words 16..63 is sha256msg1 (sigma0 part),
 * plus W[t-7] (an alignr of the two newest groups), then sha256msg2 (sigma1 part). */
__attribute__((target("sha,sse4.1,ssse3")))
static void gsha_blocks_shani(uint32_t st[8], const unsigned char *p, size_t nblocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i abcd = _mm_loadu_si128((const __m128i *)&st[0]); /* lanes a b c d */
    __m128i efgh = _mm_loadu_si128((const __m128i *)&st[4]); /* lanes e f g h */
    __m128i badc = _mm_shuffle_epi32(abcd, 0xB1);             /* b a d c */
    __m128i hgfe = _mm_shuffle_epi32(efgh, 0x1B);             /* h g f e */
    __m128i abef = _mm_alignr_epi8(badc, hgfe, 8);            /* f e b a */
    __m128i cdgh = _mm_blend_epi16(hgfe, badc, 0xF0);         /* h g d c */

    while (nblocks--) {
        __m128i m[4], msg;
        const __m128i abef0 = abef, cdgh0 = cdgh;
        int i;
        for (i = 0; i < 4; i++)
            m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 16
#endif
        for (i = 0; i < 16; i++) { /* four rounds per step, words 4i .. 4i+3 */
            msg = _mm_add_epi32(m[i & 3], _mm_loadu_si128((const __m128i *)&gsha_K[4 * i]));
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, msg);
            msg = _mm_shuffle_epi32(msg, 0x0E); /* the upper two words */
            abef = _mm_sha256rnds2_epu32(abef, cdgh, msg);
            if (i < 12) { /* words 4i+16 .. 4i+19 replace words 4i .. 4i+3 */
                __m128i x = _mm_sha256msg1_epu32(m[i & 3], m[(i + 1) & 3]);
                x = _mm_add_epi32(x, _mm_alignr_epi8(m[(i + 3) & 3], m[(i + 2) & 3], 4));
                m[i & 3] = _mm_sha256msg2_epu32(x, m[(i + 3) & 3]);
            }
        }
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
        p += 64;
    }
    {
        __m128i abfe = _mm_shuffle_epi32(abef, 0x1B);  /* a b e f */
        __m128i ghcd = _mm_shuffle_epi32(cdgh, 0xB1);  /* g h c d */
        _mm_storeu_si128((__m128i *)&st[0], _mm_blend_epi16(abfe, ghcd, 0xF0));
        _mm_storeu_si128((__m128i *)&st[4], _mm_alignr_epi8(ghcd, abfe, 8));
    }
}

static int gsha_cpu_has_shani(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (!(c & (1u << 9)) || !(c & (1u << 19))) /* SSSE3, SSE4.1 */
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 29) & 1; /* SHA */
}
#endif

/* ---- dispatch ------------------------------------------------------------------------ */

static gsha_blocks_fn gsha_blocks = gsha_blocks_portable;

/* Choose the block function: want_fast=1 picks SHA-NI when the CPU has it, 0 forces the
 * portable code. Returns 1 when SHA-NI is in use. Call before hashing starts (not
 * concurrently with it). */
static int gsha_select(int want_fast)
{
#if GSHA_HAVE_X86
    if (want_fast && gsha_cpu_has_shani()) {
        gsha_blocks = gsha_blocks_shani;
        return 1;
    }
#else
    (void)want_fast;
#endif
    gsha_blocks = gsha_blocks_portable;
    return 0;
}

static int gsha_fast_available(void)
{
#if GSHA_HAVE_X86
    return gsha_cpu_has_shani();
#else
    return 0;
#endif
}

/* ---- incremental hashing --------------------------------------------------------------- */

typedef struct {
    uint32_t st[8];
    uint64_t total;          /* bytes hashed so far */
    unsigned char buf[64];   /* a partial block */
    size_t fill;
} gsha_ctx;

static inline void gsha_init(gsha_ctx *c)
{
    memcpy(c->st, gsha_IV, sizeof c->st);
    c->total = 0;
    c->fill = 0;
}

static void gsha_update(gsha_ctx *c, const unsigned char *p, size_t n)
{
    c->total += n;
    if (c->fill) {
        size_t take = 64 - c->fill;
        if (take > n)
            take = n;
        memcpy(c->buf + c->fill, p, take);
        c->fill += take;
        p += take;
        n -= take;
        if (c->fill < 64)
            return;
        gsha_blocks(c->st, c->buf, 1);
        c->fill = 0;
    }
    if (n >= 64) { /* whole blocks straight from the input (unaligned loads are fine) */
        gsha_blocks(c->st, p, n / 64);
        p += n & ~(size_t)63;
        n &= 63;
    }
    if (n) {
        memcpy(c->buf, p, n);
        c->fill = n;
    }
}

static void gsha_final(gsha_ctx *c, unsigned char out[32])
{
    uint64_t bits = c->total * 8;
    size_t k = c->fill;
    int i;
    c->buf[k++] = 0x80;
    if (k > 56) { /* no room for the length: pad this block, then one more */
        memset(c->buf + k, 0, 64 - k);
        gsha_blocks(c->st, c->buf, 1);
        k = 0;
    }
    memset(c->buf + k, 0, 56 - k);
    for (i = 0; i < 8; i++)
        c->buf[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    gsha_blocks(c->st, c->buf, 1);
    for (i = 0; i < 8; i++)
        gsha_store_be(out + 4 * i, c->st[i]);
}

static void gsha_digest(const unsigned char *p, size_t n, unsigned char out[32])
{
    gsha_ctx c;
    gsha_init(&c);
    gsha_update(&c, p, n);
    gsha_final(&c, out);
}

/* RFC 9162 interior node: SHA-256(0x01 || left || right), 65 bytes = two blocks. */
static void gsha_node(const unsigned char left[32], const unsigned char right[32],
                      unsigned char out[32])
{
    unsigned char b[128];
    uint32_t st[8];
    int i;
    b[0] = 0x01;
    memcpy(b + 1, left, 32);
    memcpy(b + 33, right, 32);
    b[65] = 0x80;
    memset(b + 66, 0, 128 - 66 - 2);
    b[126] = (65 * 8) >> 8; /* message length 520 bits, big-endian */
    b[127] = (65 * 8) & 0xff;
    memcpy(st, gsha_IV, sizeof st);
    gsha_blocks(st, b, 2);
    for (i = 0; i < 8; i++)
        gsha_store_be(out + 4 * i, st[i]);
}

#endif /* GUARD_SHA256_H */
