#include "version.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

/* Reads component I of V into *out; false when V has fewer components. */
bool ib_version_part(const char *v, int i, unsigned long long *out)
{
	const char *p = v;
	for (int k = 0; k < i; k++) {
		while (isdigit((unsigned char)*p))
			p++;
		if (*p != '.' || !isdigit((unsigned char)p[1]))
			return false;
		p++;
	}
	if (!isdigit((unsigned char)*p))
		return false;
	unsigned long long n = 0;
	for (; isdigit((unsigned char)*p); p++)
		n = n > 100000000000ULL ? n : n * 10 + (unsigned)(*p - '0');
	*out = n;
	return true;
}

int ib_version_ncomp(const char *v)
{
	int n = 0;
	unsigned long long dummy;
	while (n < 64 && ib_version_part(v, n, &dummy))
		n++;
	return n;
}

int ib_version_cmp_n(const char *a, const char *b, int n)
{
	for (int i = 0; i < n; i++) {
		unsigned long long x = 0, y = 0;
		bool ha = ib_version_part(a, i, &x), hb = ib_version_part(b, i, &y);
		if (!ha && !hb)
			return 0;
		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

int ib_version_cmp(const char *a, const char *b)
{
	return ib_version_cmp_n(a, b, 64);
}

int ib_version_cmp_short(const char *a, const char *b)
{
	int na = ib_version_ncomp(a), nb = ib_version_ncomp(b);
	return ib_version_cmp_n(a, b, na < nb ? na : nb);
}

bool ib_version_in(const char *v, const char *lo, const char *hi)
{
	if (lo && ib_version_cmp_short(v, lo) < 0)
		return false;
	if (hi && ib_version_cmp_short(v, hi) > 0)
		return false;
	return true;
}

bool ib_version_valid(const char *v)
{
	if (v == NULL || !isdigit((unsigned char)*v))
		return false;
	for (const char *p = v; *p; p++) {
		if (*p == '.') {
			if (!isdigit((unsigned char)p[1]))
				return false;
		} else if (!isdigit((unsigned char)*p))
			return false;
	}
	return strlen(v) < 64;
}
