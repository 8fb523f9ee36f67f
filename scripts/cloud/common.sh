#!/usr/bin/env bash
# Shared by the cloud scripts (sourced, not run): which textgen command to call.
# TEXTGEN overrides it; otherwise the repository's .venv, then textgen on PATH.

# shellcheck disable=SC2034  # textgen is used by the scripts that source this file
if [[ -n "${TEXTGEN:-}" ]]; then
  read -r -a textgen <<<"$TEXTGEN"
elif [[ -x .venv/bin/textgen ]]; then
  textgen=(.venv/bin/textgen)
else
  textgen=(textgen)
fi
