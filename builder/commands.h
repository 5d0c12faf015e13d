#pragma once
/* The commands, one per builder/cmd_<name>.c, each with its option table (see
 * cmdline.h). The table that lists them is in builder/main.c (one place, one grep).
 * docs/engine.md, "Adding a command", says how to add one. */
#include "cmdline.h"

extern const struct ib_cmd ib_cmd_build;
extern const struct ib_cmd ib_cmd_plan;
extern const struct ib_cmd ib_cmd_fetch;
extern const struct ib_cmd ib_cmd_pin;
extern const struct ib_cmd ib_cmd_shell;
extern const struct ib_cmd ib_cmd_pack;
extern const struct ib_cmd ib_cmd_verify;
extern const struct ib_cmd ib_cmd_unpack;
extern const struct ib_cmd ib_cmd_export;
extern const struct ib_cmd ib_cmd_run;
extern const struct ib_cmd ib_cmd_keygen;
extern const struct ib_cmd ib_cmd_driver;
extern const struct ib_cmd ib_cmd_pull;
extern const struct ib_cmd ib_cmd_trust;
extern const struct ib_cmd ib_cmd_advise;
extern const struct ib_cmd ib_cmd_mirror;
