"""The pure core: every decision the operator makes, and nothing else.

What is here: the engine's entry points (`engine`: decide, and the steps around a target write)
and its interface (`decision`); its rules split by reason to change (`drift_rules`,
`request_rules`, `stage_rules`, `analysis_rules`, on the decision under way in `work`); a
measurement's verdict (`verdicts`); what people read (`messages`); what a status says (`facts`);
what a measurement is (`measurement`), the status conditions (`conditions`), gates (`gates`), the
compare guardrail (`guardrail`), what a manual request is (`manual_requests`: reading one; filing
one is the CLI's), whether a status is worth writing (`statuswrites`), and how a credential in a URL or a message is
shown (`redact`).

May import: `featurerollout.api` (the resource's models) and `featurerollout.stats` (the
statistics), and the standard library's pure parts. Never an I/O library (kubernetes, kopf,
httpx, prometheus_api_client), never the clock: the time comes in as an argument. The
import-linter contracts in pyproject.toml enforce this.
"""
