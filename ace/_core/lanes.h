/* Two doubles processed as one SSE2 register (GCC/Clang vector extension).
 *
 * The evaluator walks the product tree for two atoms at once, one per lane. Arithmetic on
 * ace_v2 is element-wise IEEE arithmetic, so each lane gives exactly the scalar result.
 * Cython sees ace_v2 as a double (it only emits the C expressions); loads, stores and
 * broadcasts go through these helpers. Without the extension (other compilers) ace_v2 would
 * need a fallback; GCC and Clang are what the build supports.
 */
#ifndef ACE_LANES_H
#define ACE_LANES_H
#include <string.h>

typedef double ace_v2 __attribute__((vector_size(16)));

static inline ace_v2 ace_v2_load(const double* p) { ace_v2 v; memcpy(&v, p, sizeof v); return v; }
static inline void ace_v2_store(double* p, ace_v2 v) { memcpy(p, &v, sizeof v); }
static inline ace_v2 ace_v2_set(double lane0, double lane1) { ace_v2 v = {lane0, lane1}; return v; }
static inline ace_v2 ace_v2_splat(double x) { ace_v2 v = {x, x}; return v; }
static inline double ace_v2_lane(ace_v2 v, int lane) { return v[lane]; }

#endif
