"""The `featurerollout` command line (also `kubectl featurerollout`).

`cli` wires up the subcommands; each lives in the module that owns its job (`manual` for
promote/pause/resume/abort/retry/approve, `listing` for list, `status_view` for status, `simulate`
for simulate, `crd` for crd; `sandbox` only says where the local API went). Their views are pure
renders (object + now -> text), shared through `presentation`, so that `status` and `list` never
disagree.

May import every layer below it; nothing imports the commands except `featurerollout.__main__`.
"""
