"""Rule 3: measurements update `status.metrics`; a budget breached (or no data under Rollback,
or errors) more often than tolerated rolls back or halts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from featurerollout.api import Analysis, Metric, MetricResult, MetricStatus, OnError, OnNoData
from featurerollout.core.guardrail import stages_with_control
from featurerollout.core.measurement import Measurement
from featurerollout.core.messages import breach_words, cli, pct
from featurerollout.core.verdicts import evaluate, sampling
from featurerollout.core.work import Work


class AnalysisRules(Work):
    """Rule 3 on the decision under way: measurements, budgets, errors."""

    # -- 3. measurements

    def analyse(self, analysis: Analysis, measurements: Mapping[str, Measurement]) -> None:
        known = {m.name: m for m in self.st.metrics}
        metrics: list[MetricStatus] = []
        measured: list[tuple[Metric, MetricStatus]] = []
        for metric in analysis.metrics:
            previous = known.get(metric.name)
            measurement = measurements.get(metric.name)
            if measurement is None:
                if previous is not None:
                    metrics.append(previous)
                continue
            current = evaluate(analysis, metric, previous, measurement, self.now,
                                weight=self.st.current_weight, stages=stages_with_control(self.spec))
            metrics.append(current)
            measured.append((metric, current))
        self.update(metrics=metrics, last_analysis_at=self.now)

        no_data_fails = analysis.on_no_data == OnNoData.ROLLBACK
        for metric, current in measured:  # budgets first: a breach outranks an error
            counts = current.result == MetricResult.FAILED or (
                current.result == MetricResult.NO_DATA and no_data_fails and not sampling(current)
            )
            if counts and current.consecutive_failures > metric.failure_limit:
                self.breached(metric, current)
                return
        limit = analysis.consecutive_error_limit
        for metric, current in measured:
            if current.result == MetricResult.ERROR and current.consecutive_errors > limit:
                self.analysis_broken(analysis, metric, current)
                return
        for metric, current in measured:  # within the tolerance: say so, hold
            if current.result == MetricResult.FAILED and current.value is not None:
                words, _ = breach_words(metric, current.value, current.message)
                self.event("Warning", "AnalysisFailing", f"{metric.name} {words} {self.where()}: failure "
                           f"{current.consecutive_failures} of {metric.failure_limit} tolerated; holding")
            elif current.result == MetricResult.ERROR and current.consecutive_errors == 1:
                self.event("Warning", "AnalysisError", f"{metric.name} could not be evaluated "
                           f"{self.where()}: {current.message}; holding")

    def breached(self, metric: Metric, current: MetricStatus) -> None:
        if current.result == MetricResult.NO_DATA:
            reason = "NoData"
            long = (f"{metric.name} had no data ({current.message}) {current.consecutive_failures} times "
                    f"in a row, more than its failureLimit {metric.failure_limit}, {self.where()}; "
                    f"onNoData is Rollback")
            short = f"{metric.name} had no data"
        else:
            reason = "BudgetExceeded"
            value = current.value if current.value is not None else float("nan")
            words, brief = breach_words(metric, value, current.message)
            long = f"{metric.name} {words} {self.where()}"
            short = f"{metric.name} {brief}"
        # The metric, its value and its budget as fields too, for notifications (notify/).
        culprit = {"metric": metric.name, "value": current.value, "budget": metric.budget()}
        if self.spec.rollback.automatic:
            self.roll_back(reason, long, short, **culprit)
        else:
            self.halt(reason, long + f"; automatic rollback is off (rollback.automatic: false), so it "
                      f"holds {pct(self.st.current_weight)}: run {cli('abort')} to roll back or "
                      f"{cli('resume')} to continue", "AnalysisFailing", **culprit)

    def analysis_broken(self, analysis: Analysis, metric: Metric, current: MetricStatus) -> None:
        long = (f"{metric.name} could not be evaluated {current.consecutive_errors} times in a row, "
                f"more than consecutiveErrorLimit {analysis.consecutive_error_limit}, {self.where()}: "
                f"{current.message}")
        culprit: dict[str, Any] = {"metric": metric.name, "budget": metric.budget()}
        if analysis.on_error == OnError.ROLLBACK:
            self.roll_back("AnalysisError", long + "; onError is Rollback",
                           f"{metric.name} could not be evaluated", **culprit)
        else:
            self.halt("AnalysisError", long + f"; onError is Pause, so it holds "
                      f"{pct(self.st.current_weight)}: run {cli('abort')} to roll back or "
                      f"{cli('resume')} to continue", "AnalysisError", **culprit)

