"""The optional `sandbox` extra: what it holds, and what to tell someone who lacks it.

`pip install featurerollout` installs only what the operator (`featurerollout run`) and the CLI
need, so that the image that runs in real clusters carries no local API server. The sandbox
(`featurerollout sandbox`) and the demo (`python -m featurerollout.demo`) need more:
`pip install 'featurerollout[sandbox]'`.
"""

from __future__ import annotations

# Import names of the extra's distributions (pyproject.toml, [project.optional-dependencies]).
SANDBOX_MODULES: tuple[str, ...] = ("aiohttp", "jsonpatch", "celpy", "openfeature.contrib.tools.flagd.core")


def missing_extra_message(what: str, missing: str | None) -> str:
    """The error for `what` (e.g. `featurerollout sandbox`) run without the extra."""
    lacking = f" (missing: {missing})" if missing else ""
    return (
        f"{what} needs the optional 'sandbox' dependencies{lacking}. Install them with:\n"
        "  pip install 'featurerollout[sandbox]'\n"
        "or, from a checkout: pip install -e '.[sandbox]' (`make install` does this)."
    )
