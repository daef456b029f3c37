/*
 * The runner PAL (runner_pal.c) without pal_destroy, which every PAL API version requires: rune
 * must refuse to load it. Built with -DPAL_VERSION=2.
 */
#define pal_destroy runner_pal_destroy_renamed
#include "runner_pal.c"
