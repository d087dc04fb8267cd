"""Shared by the tests that compare decision paths: what makes two decisions the same,
and the per-message reference path that every batched path must equal."""

from __future__ import annotations

from guard.decide import Decision, Pipeline, Stage, _Ctx


def decision_key(d: Decision) -> tuple:
    """Everything a decision says: verdict, findings (rule, message, span), output,
    banner, lanes, candidate, format and automatic release."""
    return (d.verdict, [f.to_dict() for f in d.findings], d.output, d.banner, d.lanes,
            d.candidate, d.format, d.auto_release)


def reference_key(pipe: Pipeline, data: bytes) -> tuple:
    """``decision_key`` of ``data`` decided alone through the per-message path of every
    stage (the base ``Stage.run_batch``, which calls each stage's ``run``)."""
    ctx = _Ctx(data, "", 60.0)
    for stage in pipe.stages:
        Stage.run_batch(stage, [ctx], lambda: None)
    return decision_key(pipe._finish(ctx, True, pipe.policy.sha256))
