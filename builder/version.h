#pragma once
/* Release versions ("10.0", "9.2.148", "410.48", "6.1+PTX"): the one comparison
 * that the compatibility rules, the manifest's checks and the GPU preflight all
 * use, so that "the host's driver is new enough" means the same thing in plan,
 * verify --host and run --gpu. */
#include <stdbool.h>

/* Numeric per-component comparison: "9.2" < "9.2.148" < "10.0" < "10.2" < "11.0";
 * missing components count as 0 ("10" == "10.0"). Anything from the first character
 * that is neither digit nor '.' is ignored ("6.1+PTX" == "6.1"). Returns <0, 0, >0. */
int ib_version_cmp(const char *a, const char *b);
/* As ib_version_cmp, comparing only the first N components. */
int ib_version_cmp_n(const char *a, const char *b, int n);
/* Reads component I of V ("9.2.148", 1 -> 2) into *OUT; false when V has fewer. */
bool ib_version_part(const char *v, int i, unsigned long long *out);
/* Number of dot-separated components ("9.2.148" -> 3). */
int ib_version_ncomp(const char *v);
/* As ib_version_cmp at the precision of the shorter of the two: "9.2" == "9.2.148". */
int ib_version_cmp_short(const char *a, const char *b);
/* V within [LO, HI] (either may be NULL: open), each bound compared at the
 * precision of the shorter version: "10.0.130" <= "10.0", "3.6" >= "3.6.1". */
bool ib_version_in(const char *v, const char *lo, const char *hi);
/* True when V is digits separated by single dots ("10.0", "7.6.5.32"). */
bool ib_version_valid(const char *v);
