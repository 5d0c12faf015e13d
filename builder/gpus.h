#pragma once
/* The NVIDIA GPUs in this host, as the kernel sees them, with no driver needed:
 * PCI devices of vendor 10de and display class in /sys/bus/pci/devices, the
 * model names the NVIDIA module gives in /proc/driver/nvidia/gpus/STAR/information,
 * and the device names of the host's pci.ids. ROOT prefixes every path ("" for
 * the host; tests pass a fixture tree through $IMGBUILD_HOST_ROOT, as driver.h
 * does). No CUDA knowledge here: compat.h maps PCI ids to chips and archs. */
#include <stddef.h>

#include "error.h"

struct ib_host_gpu {
	char *bus;	   /* "0000:01:00.0" */
	char *pci;	   /* "10de:1392", or NULL when only the driver's information file names it */
	char *model;	   /* the NVIDIA module's "Model:" line, or NULL */
	char *pciids_name; /* pci.ids' device line, "GM107M [GeForce GTX 860M]", or NULL */
};

struct ib_host_gpus {
	struct ib_host_gpu *v;
	size_t n;
	char *pciids; /* the pci.ids file read (with ROOT), or NULL when none was found */
};

/* Fills OUT (zeroed first). A host without NVIDIA GPUs gives n == 0. */
int ib_gpus_scan(const char *root, struct ib_host_gpus *out, ib_error_t *err);
void ib_gpus_free(struct ib_host_gpus *g);
