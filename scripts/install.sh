#!/usr/bin/env bash
# PLACEHOLDER (lab branch only): the real installer is written by the install helper and
# replaces this file when the lead merges. `corral lab` embeds whatever scripts/install.sh is.
echo "install.sh: placeholder; the real installer is not merged yet" >&2
exit 1
