#ifndef IB_STRSET_H
#define IB_STRSET_H
/* A set of strings with a one-byte value each, for names read from untrusted
 * input (an image's entries, before its signature is checked). The hash is
 * keyed per process, so crafted names cannot be made to share a probe chain. */
#include <stddef.h>

struct ib_strset {
	char **slot;
	unsigned char *kind;
	size_t cap, n;
	size_t probes; /* slots looked at beyond the first, over every put and get */
};

/* Adds KEY (copied) with KIND, or sets the kind of KEY when present. */
void ib_strset_put(struct ib_strset *s, const char *key, unsigned char kind);
/* The kind stored for KEY, 0 when absent. */
unsigned char ib_strset_get(struct ib_strset *s, const char *key);
void ib_strset_free(struct ib_strset *s);

#endif
