/* Host GPU discovery for `imgbuild advise auto` and `run --gpu`. The PCI ids
 * come from sysfs because a GPU the installed driver no longer supports (the
 * case that matters: a Kepler card under a 525 driver) never shows up in
 * /proc/driver/nvidia or through libcuda. */
#include "gpus.h"
#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_line(const char *path)
{
	ib_error_t err = NULL;
	char *text = ib_read_file(path, NULL, &err);
	ib_error_free(&err);
	if (text == NULL)
		return NULL;
	text[strcspn(text, "\r\n")] = '\0';
	return text;
}

static int cmp_gpu(const void *a, const void *b)
{
	return strcmp(((const struct ib_host_gpu *)a)->bus, ((const struct ib_host_gpu *)b)->bus);
}

static struct ib_host_gpu *by_bus(struct ib_host_gpus *g, const char *bus)
{
	for (size_t i = 0; i < g->n; i++)
		if (strcmp(g->v[i].bus, bus) == 0)
			return &g->v[i];
	g->v = xrealloc(g->v, (g->n + 1) * sizeof(*g->v));
	struct ib_host_gpu *x = &g->v[g->n++];
	memset(x, 0, sizeof(*x));
	x->bus = xstrdup(bus);
	return x;
}

/* "0x10de\n" -> 0x10de; -1 when unreadable. */
static long hex_file(const char *dir, const char *name)
{
	cleanup_free char *path = xasprintf("%s/%s", dir, name);
	cleanup_free char *s = read_line(path);
	if (s == NULL)
		return -1;
	char *end = NULL;
	long v = strtol(s, &end, 16);
	return end == s ? -1 : v;
}

static void scan_sysfs(const char *root, struct ib_host_gpus *g)
{
	cleanup_free char *dir = xasprintf("%s/sys/bus/pci/devices", root);
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		cleanup_free char *dev = xasprintf("%s/%s", dir, e->d_name);
		long vendor = hex_file(dev, "vendor"), device = hex_file(dev, "device"), cls = hex_file(dev, "class");
		/* 0x03xxxx: display controllers (VGA 0x0300, 3D 0x0302); the HDMI audio
		 * function of the same card is 0x0403 and is left out. */
		if (vendor != 0x10de || device < 0 || (cls >> 16) != 0x03)
			continue;
		struct ib_host_gpu *x = by_bus(g, e->d_name);
		free(x->pci);
		x->pci = xasprintf("10de:%04lx", device & 0xffff);
	}
	closedir(d);
}

static void scan_proc(const char *root, struct ib_host_gpus *g)
{
	cleanup_free char *dir = xasprintf("%s/proc/driver/nvidia/gpus", root);
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		cleanup_free char *path = xasprintf("%s/%s/information", dir, e->d_name);
		ib_error_t err = NULL;
		cleanup_free char *text = ib_read_file(path, NULL, &err);
		ib_error_free(&err);
		if (text == NULL)
			continue;
		struct ib_host_gpu *x = by_bus(g, e->d_name);
		for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
			if (strncmp(line, "Model:", 6) != 0)
				continue;
			char *v = line + 6;
			while (*v == ' ' || *v == '\t')
				v++;
			size_t n = strlen(v);
			while (n > 0 && isspace((unsigned char)v[n - 1]))
				v[--n] = '\0';
			free(x->model);
			x->model = xstrdup(v);
		}
	}
	closedir(d);
}

/* pci.ids: "10de  NVIDIA Corporation" then "\t1392  GM107M [GeForce GTX 860M]". */
static void names_from_pciids(const char *root, struct ib_host_gpus *g)
{
	static const char *const places[] = { "/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids", NULL };
	for (const char *const *p = places; *p && g->pciids == NULL; p++) {
		cleanup_free char *path = xasprintf("%s%s", root, *p);
		if (ib_path_exists(path))
			g->pciids = steal_pointer(&path);
	}
	if (g->pciids == NULL)
		return;
	FILE *f = fopen(g->pciids, "re");
	if (f == NULL)
		return;
	char line[512];
	bool in_nvidia = false;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] != '\t' && line[0] != '#' && line[0] != '\0')
			in_nvidia = strncmp(line, "10de ", 5) == 0;
		else if (in_nvidia && line[0] == '\t' && line[1] != '\t') {
			char id[5] = { 0 };
			memcpy(id, line + 1, strnlen(line + 1, 4));
			const char *name = line + 5;
			while (*name == ' ')
				name++;
			for (size_t i = 0; i < g->n; i++)
				if (g->v[i].pci && strcmp(g->v[i].pci + 5, id) == 0 && g->v[i].pciids_name == NULL)
					g->v[i].pciids_name = xstrdup(name);
		}
	}
	fclose(f);
}

int ib_gpus_scan(const char *root, struct ib_host_gpus *out, ib_error_t *err)
{
	(void)err;
	memset(out, 0, sizeof(*out));
	cleanup_free char *r = xstrdup(root ? root : "");
	size_t n = strlen(r);
	while (n > 0 && r[n - 1] == '/')
		r[--n] = '\0';
	scan_sysfs(r, out);
	scan_proc(r, out);
	/* A GPU under /proc whose sysfs entry we could not read keeps pci NULL. */
	for (size_t i = 0; i < out->n; i++)
		if (out->v[i].pci == NULL) {
			cleanup_free char *dev = xasprintf("%s/sys/bus/pci/devices/%s", r, out->v[i].bus);
			long device = hex_file(dev, "device");
			if (device >= 0)
				out->v[i].pci = xasprintf("10de:%04lx", device & 0xffff);
		}
	names_from_pciids(r, out);
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), cmp_gpu);
	return 0;
}

void ib_gpus_free(struct ib_host_gpus *g)
{
	if (g == NULL)
		return;
	for (size_t i = 0; i < g->n; i++) {
		free(g->v[i].bus);
		free(g->v[i].pci);
		free(g->v[i].model);
		free(g->v[i].pciids_name);
	}
	free(g->v);
	free(g->pciids);
	memset(g, 0, sizeof(*g));
}
