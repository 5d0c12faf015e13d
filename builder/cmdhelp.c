/* --help for every command, shared so that each cmd_*.c links without main.c (fuzzers, tests). */
#include <stdio.h>
#include <string.h>

#include "commands.h"

bool ib_cmd_wants_help(int argc, char **argv, const struct ib_cmd_help *help)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("usage: %s\n%s\n", help->usage, help->summary);
			if (help->options)
				printf("\noptions:\n%s", help->options);
			return true;
		}
	}
	return false;
}
