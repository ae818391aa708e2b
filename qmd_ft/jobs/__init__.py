"""Hugging Face Jobs: run the same qmd-ft command, with the same config, on a cloud GPU.

`submit` uploads what the command reads (`inputs`), a wheel of this working tree with the
lock's pins (`code`) and a job script (`script`) that installs them, runs the command and
commits its outputs while it runs; `manage` lists, follows, inspects, cancels and pulls the
results of those jobs. Everything goes through huggingface_hub's own client (`hub`), imported
only here, so the core runs without it.
"""
